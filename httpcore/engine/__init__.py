"""The engine: one thread, one asyncio loop, every socket and all pool state."""
