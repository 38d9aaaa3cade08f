"""Our library: httpcore.Client (sync modes) and httpcore.PoolManager (async)."""

from __future__ import annotations

import asyncio
import os
import sys

from _common import (
    check_small,
    emit,
    parse_args,
    run_download,
    run_downloads,
    run_seq,
    run_tasks,
    run_threads,
    ssl_context,
)

import httpcore


def profile_engine_thread(path: str) -> None:
    """cProfile the engine thread (BENCH_CPROFILE=FILE): wraps Engine._main, so
    the whole life of every engine started from now on is recorded, and the
    stats are dumped to FILE when its loop stops (at client close / exit)."""
    import cProfile

    from httpcore.engine.runner import Engine

    original = Engine._main

    def _main(self, kind):
        prof = cProfile.Profile()
        try:
            prof.runcall(original, self, kind)
        finally:
            prof.dump_stats(path)

    Engine._main = _main


def options(args):
    n = max(args.concurrency, 1)
    kw = {
        "timeout": httpcore.Timeout(30.0),
        # Keep as many idle connections as there are callers, like the peers do
        # (urllib3 maxsize=32, aiohttp limit=100).
        "limits": httpcore.Limits(
            max_connections=max(100, n), max_keepalive_connections=max(20, n)
        ),
        "http2": args.http2,
    }
    if args.http2 and args.url.startswith("http:"):
        kw["http1"] = False  # h2c, prior knowledge
    ctx = ssl_context(args)
    if ctx is not None:
        kw["ssl"] = ctx
    return kw


def conn_info(obj) -> dict:
    try:
        conns = obj.connections()
        return {
            "pool_connections": len(conns),
            "pool_versions": sorted({c.http_version for c in conns}),
        }
    except Exception as exc:  # introspection is optional here
        return {"pool_connections_error": repr(exc)}


def main() -> None:
    args = parse_args(["seq", "threads", "async", "download", "downloads"])
    url = args.url
    seen: dict[str, str] = {}
    if os.environ.get("BENCH_CPROFILE"):
        profile_engine_thread(os.environ["BENCH_CPROFILE"])

    if args.mode == "async":

        async def amain() -> None:
            async with httpcore.PoolManager(**options(args)) as pool:

                async def fn() -> None:
                    r = await pool.request("GET", url)
                    check_small(r.status_code, r.body)
                    seen["http_version"] = r.http_version

                result = await run_tasks(fn, args)
                info = conn_info(pool)
            emit("ours", httpcore.__version__, args, result, uvloop="uvloop" in sys.modules,
                 http_version=seen.get("http_version"), **info)

        asyncio.run(amain())
        return

    with httpcore.Client(**options(args)) as client:
        if args.mode in ("download", "downloads"):

            def dl() -> int:
                n = 0
                with client.request("GET", url, stream=True) as r:
                    seen["http_version"] = r.http_version
                    for chunk in r.stream():
                        n += len(chunk)
                return n

            result = run_download(dl, args) if args.mode == "download" else run_downloads(dl, args)
        else:

            def fn() -> None:
                r = client.request("GET", url)
                check_small(r.status_code, r.body)
                seen["http_version"] = r.http_version

            result = run_seq(fn, args) if args.mode == "seq" else run_threads(fn, args)
        info = conn_info(client)
    emit("ours", httpcore.__version__, args, result, uvloop="uvloop" in sys.modules,
         http_version=seen.get("http_version"), **info)


if __name__ == "__main__":
    main()
