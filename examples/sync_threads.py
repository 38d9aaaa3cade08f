"""64 blocking threads, one ``httpcore.Client``, one HTTP/2 connection.

Starts hypercorn (in a subprocess, on a free port) speaking HTTP/2 with prior
knowledge on a plain port (h2c, no certificates), then 64 threads call one
``Client(http1=False, http2=True)`` as fast as they can. Every thread blocks on
its own request; the engine thread multiplexes all of them as streams of one
TCP connection. Prints requests/s and the connections the client holds::

    python examples/sync_threads.py            # 64 threads x 100 requests
    python examples/sync_threads.py --quick    # 64 threads x 10 requests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpcore

THREADS = 64


# --------------------------------------------------------------------------
# The server: hypercorn in a subprocess (this file, run with --serve FD).


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: every path answers ``hello over HTTP/<version>``."""
    if scope["type"] != "http":
        return
    body = b"hello over HTTP/" + scope["http_version"].encode() + b"\n"
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(fd: int) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{fd}"]  # the socket the parent bound: no port race, no polling
    config.h2_max_concurrent_streams = 128  # room for all 64 threads at once
    config.keep_alive_max_requests = 1_000_000_000  # hypercorn's default (1000) sends GOAWAY
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(hypercorn_serve(app, config))  # type: ignore[arg-type]


@contextlib.contextmanager
def hypercorn_h2c() -> Iterator[str]:
    """hypercorn on a listening socket bound here: connections queue until it accepts."""
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as sock:
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(sock.fileno())], pass_fds=[sock.fileno()]
        )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(10)


# --------------------------------------------------------------------------
# The example.


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 requests per thread")
    parser.add_argument("--requests", type=int, help="requests per thread (default 100)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    per_thread = args.requests or (10 if args.quick else 100)

    with hypercorn_h2c() as url, httpcore.Client(http1=False, http2=True) as client:
        print(f"server: hypercorn, HTTP/2 with prior knowledge (h2c) on {url}")
        # One request first: hypercorn may still be starting (the connection
        # waits in the socket's backlog), and it opens the connection.
        first = client.request("GET", url, timeout=30)
        print(f"first response: {first.http_version} {first.status_code} {first.body!r}")

        barrier = threading.Barrier(THREADS)

        def worker() -> tuple[int, set[str]]:
            barrier.wait()  # all threads start together
            ok, versions = 0, set()
            for _ in range(per_thread):
                response = client.request("GET", url)
                ok += response.status_code == 200
                versions.add(response.http_version)
            return ok, versions

        with ThreadPoolExecutor(THREADS) as pool:
            start = time.perf_counter()
            results = list(pool.map(lambda _: worker(), range(THREADS)))
            elapsed = time.perf_counter() - start
        ok = sum(n for n, _ in results)
        versions = sorted(set().union(*(v for _, v in results)))
        total = THREADS * per_thread
        print(
            f"{THREADS} threads x {per_thread} requests on one Client: {ok}/{total} OK, "
            f"{', '.join(versions)}, {elapsed:.2f} s, {ok / elapsed:.0f} requests/s"
        )
        infos = client.connections()
        print(f"TCP connections: {len(infos)}")
        for info in infos:
            print(f"  {info}")
        served = sum(info.requests_served for info in infos)
    success = ok == total and versions == ["HTTP/2"] and len(infos) == 1 and served == total + 1
    print("OK" if success else "FAILED")
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main())
