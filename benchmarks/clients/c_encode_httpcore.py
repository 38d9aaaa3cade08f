"""encode's httpcore (the one httpx uses): ConnectionPool / AsyncConnectionPool.

Runs in its own venv: it has the same import name as our library.
"""

from __future__ import annotations

import asyncio

from _common import (
    check_small,
    emit,
    parse_args,
    run_download,
    run_seq,
    run_tasks,
    run_threads,
    ssl_context,
)

import httpcore


def options(args):
    n = max(args.concurrency, 1)
    kw = {"max_connections": max(100, n), "max_keepalive_connections": max(20, n)}
    if args.http2:
        kw["http2"] = True
        if args.url.startswith("http:"):
            kw["http1"] = False
    ctx = ssl_context(args)
    if ctx is not None:
        kw["ssl_context"] = ctx
    return kw


EXT = {"timeout": {"connect": 30.0, "read": 30.0, "write": 30.0, "pool": 30.0}}


def main() -> None:
    args = parse_args(["seq", "threads", "async", "download"])
    url = args.url
    seen: dict[str, str] = {}
    version = httpcore.__version__

    if args.mode == "async":

        async def amain() -> None:
            async with httpcore.AsyncConnectionPool(**options(args)) as pool:

                async def fn() -> None:
                    r = await pool.request("GET", url, extensions=EXT)
                    check_small(r.status, r.content)
                    seen["http_version"] = r.extensions["http_version"].decode()

                result = await run_tasks(fn, args)
                n = len(pool.connections)
            emit("encode-httpcore", version, args, result, pool_connections=n,
                 http_version=seen.get("http_version"))

        asyncio.run(amain())
        return

    with httpcore.ConnectionPool(**options(args)) as pool:
        if args.mode == "download":

            def dl() -> int:
                n = 0
                with pool.stream("GET", url, extensions=EXT) as r:
                    seen["http_version"] = r.extensions["http_version"].decode()
                    for chunk in r.iter_stream():
                        n += len(chunk)
                return n

            result = run_download(dl, args)
        else:

            def fn() -> None:
                r = pool.request("GET", url, extensions=EXT)
                check_small(r.status, r.content)
                seen["http_version"] = r.extensions["http_version"].decode()

            result = run_seq(fn, args) if args.mode == "seq" else run_threads(fn, args)
        n = len(pool.connections)
    emit("encode-httpcore", version, args, result, pool_connections=n,
         http_version=seen.get("http_version"))


if __name__ == "__main__":
    main()
