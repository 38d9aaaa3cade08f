"""Micro-benchmark: one round trip caller -> asyncio loop thread ("engine") -> caller.

Each variant sends a tiny message to a loop running in its own thread, whose handler
replies at once; the caller blocks until the reply is back. Prints microseconds per
round trip (median of rounds).

    python benchmarks/bridge.py [--n 50000] [--rounds 5] [--loop asyncio|uvloop] [--json]

Needs janus (and uvloop for --loop uvloop): run it with our venv,
benchmarks/.work/venv-ours/bin/python, or with the project's .venv.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import queue
import statistics
import threading
import time
from collections.abc import Callable

import janus


class LoopThread:
    def __init__(self, loop_kind: str) -> None:
        if loop_kind == "uvloop":
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="bridge-engine", daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def timed(n: int, body: Callable[[int], None]) -> float:
    body(min(n, 2000))  # warm-up
    t0 = time.perf_counter()
    body(n)
    return (time.perf_counter() - t0) / n * 1e6


def v_call_soon_simplequeue(eng: LoopThread, n: int) -> float:
    reply: queue.SimpleQueue[int] = queue.SimpleQueue()
    put, get, cst = reply.put, reply.get, eng.loop.call_soon_threadsafe

    def body(k: int) -> None:
        for i in range(k):
            cst(put, i)
            get()

    return timed(n, body)


def v_call_soon_future(eng: LoopThread, n: int) -> float:
    cst = eng.loop.call_soon_threadsafe

    def body(k: int) -> None:
        for i in range(k):
            fut: concurrent.futures.Future[int] = concurrent.futures.Future()
            cst(fut.set_result, i)
            fut.result()

    return timed(n, body)


def v_call_soon_lock(eng: LoopThread, n: int) -> float:
    cst = eng.loop.call_soon_threadsafe

    def body(k: int) -> None:
        for _ in range(k):
            lock = threading.Lock()
            lock.acquire()
            cst(lock.release)
            lock.acquire()

    return timed(n, body)


def v_janus_inbox(eng: LoopThread, n: int) -> float:
    async def make() -> janus.Queue[tuple[int, queue.SimpleQueue[int]]]:
        return janus.Queue()

    inbox = eng.run(make())

    async def consumer() -> None:
        get = inbox.async_q.get
        while True:
            msg, reply = await get()
            reply.put(msg)

    task = asyncio.run_coroutine_threadsafe(consumer(), eng.loop)
    reply: queue.SimpleQueue[int] = queue.SimpleQueue()
    put, get = inbox.sync_q.put_nowait, reply.get

    def body(k: int) -> None:
        for i in range(k):
            put((i, reply))
            get()

    try:
        return timed(n, body)
    finally:
        task.cancel()


def v_janus_per_request(eng: LoopThread, n: int) -> float:
    cst = eng.loop.call_soon_threadsafe

    def body(k: int) -> None:
        for i in range(k):
            reply: janus.Queue[int] = janus.Queue()
            cst(reply.async_q.put_nowait, i)
            reply.sync_q.get()

    return timed(n, body)


def v_janus_create(eng: LoopThread, n: int) -> float:
    def body(k: int) -> None:
        for _ in range(k):
            janus.Queue()

    return timed(n, body)


def v_async_caller(eng: LoopThread, n: int) -> float:
    """An async caller on its own loop (another thread): engine replies with the caller's
    loop.call_soon_threadsafe(fut.set_result, ...)."""
    ecst = eng.loop.call_soon_threadsafe

    async def main() -> float:
        loop = asyncio.get_running_loop()
        ccst = loop.call_soon_threadsafe

        def handler(fut: asyncio.Future[int], i: int) -> None:
            ccst(fut.set_result, i)

        async def body(k: int) -> None:
            for i in range(k):
                fut = loop.create_future()
                ecst(handler, fut, i)
                await fut

        await body(min(n, 2000))
        t0 = time.perf_counter()
        await body(n)
        return (time.perf_counter() - t0) / n * 1e6

    return asyncio.run(main())


VARIANTS: dict[str, Callable[[LoopThread, int], float]] = {
    "(1) call_soon_threadsafe + SimpleQueue reply": v_call_soon_simplequeue,
    "(1b) call_soon_threadsafe + cf.Future reply": v_call_soon_future,
    "(1c) call_soon_threadsafe + released Lock": v_call_soon_lock,
    "(2) janus inbox + SimpleQueue reply": v_janus_inbox,
    "(3) call_soon_threadsafe + new janus per req": v_janus_per_request,
    "(3b) janus.Queue() creation alone": v_janus_create,
    "(4) async caller loop <-> engine loop": v_async_caller,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50000, help="round trips per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                   help="event loop of the engine thread")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args()

    eng = LoopThread(args.loop)
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for _ in range(args.rounds):  # interleave variants round by round
            for name, fn in VARIANTS.items():
                runs[name].append(fn(eng, args.n))
    finally:
        eng.close()
    medians = {name: statistics.median(v) for name, v in runs.items()}
    if args.json:
        print(json.dumps(medians))
        return
    print(f"round trip, engine loop = {args.loop}, {args.n} x {args.rounds} rounds, median:")
    for name, us in medians.items():
        print(f"  {name:46} {us:8.1f} us")


if __name__ == "__main__":
    main()
