"""aiohttp: one ClientSession shared by all tasks."""

from __future__ import annotations

import asyncio

import aiohttp
from _common import check_small, emit, parse_args, run_tasks, ssl_context


def main() -> None:
    args = parse_args(["async"])
    url = args.url

    async def amain() -> None:
        ctx = ssl_context(args)
        connector = aiohttp.TCPConnector(limit=max(100, args.concurrency),
                                         ssl=ctx if ctx is not None else True)
        timeout = aiohttp.ClientTimeout(total=30.0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def fn() -> None:
                async with session.get(url) as r:
                    body = await r.read()
                    check_small(r.status, body)

            result = await run_tasks(fn, args)
        emit("aiohttp", aiohttp.__version__, args, result, http_version="HTTP/1.1")

    asyncio.run(amain())


if __name__ == "__main__":
    main()
