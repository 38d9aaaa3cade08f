"""Two event loops in two threads and a blocking thread, all on the default engine.

Starts hypercorn (in a subprocess, on a free port; HTTP/2 with prior knowledge,
h2c, so no certificates) whose answers say which client port each request
came from. Then, at the same time:

* thread ``loop-1`` runs its own event loop (``asyncio.run``) with concurrent tasks,
* thread ``loop-2`` runs another event loop, the same way,
* thread ``sync`` makes blocking requests one after the other,

the two loops through **one** ``PoolManager`` they share, the blocking thread
through a ``Client``. Nobody creates an engine: every request goes through the
process-wide default engine thread (``httpcore-engine``), which owns every
socket. The three callers meet half-way at a barrier, so they certainly run at
the same time. The example prints, per caller, its requests and the client
ports the server saw; then the connections each frontend holds
(``aconnections()`` / ``connections()``) and which threads wrote the
engine's log records (all of them: the one engine thread)::

    python examples/two_loops.py            # 2 x 400 async requests + 100 blocking
    python examples/two_loops.py --quick    # 2 x 100 async requests + 20 blocking
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore

TASKS = 50  # concurrent tasks per loop


# --------------------------------------------------------------------------
# The server: hypercorn in a subprocess (this file, run with --serve FD).


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: JSON with the client port (which connection) and the HTTP version."""
    if scope["type"] != "http":
        return
    body = json.dumps({"port": scope["client"][1], "http": scope["http_version"]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(fd: int) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{fd}"]  # the socket the parent bound: no port race, no polling
    config.h2_max_concurrent_streams = 2 * TASKS + 1
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


@dataclass
class Caller:
    name: str
    how: str
    ok: int = 0
    versions: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)

    def record(self, response: httpcore.Response | httpcore.AsyncResponse) -> None:
        answer = json.loads(response.body)
        self.ok += response.status_code == 200
        self.versions.add(response.http_version)
        self.ports.add(answer["port"])


class EngineLogThreads(logging.Handler):
    """Counts the ``httpcore`` log records per thread that wrote them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.threads: Counter[tuple[str | None, int | None]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.threads[(record.threadName, record.thread)] += 1


async def run_loop(
    caller: Caller, pool: httpcore.PoolManager, url: str, n: int, halfway: threading.Barrier
) -> list[httpcore.ConnectionInfo]:
    async def one() -> None:
        caller.record(await pool.request("GET", url))

    async def batch(count: int) -> None:
        for start in range(0, count, TASKS):
            await asyncio.gather(*(one() for _ in range(min(TASKS, count - start))))

    await batch(n // 2)
    await asyncio.to_thread(halfway.wait)  # off the loop: the loop stays free
    await batch(n - n // 2)
    return await pool.aconnections()  # never blocks this loop


def run_sync(
    caller: Caller, client: httpcore.Client, url: str, n: int, halfway: threading.Barrier
) -> None:
    for i in range(n):
        if i == n // 2:
            halfway.wait()
        caller.record(client.request("GET", url))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    per_loop, blocking = (100, 20) if args.quick else (400, 100)

    log_threads = EngineLogThreads()
    logger = logging.getLogger("httpcore")
    logger.addHandler(log_threads)
    logger.setLevel(logging.DEBUG)

    with hypercorn_h2c() as url:
        print(f"server: hypercorn, HTTP/2 with prior knowledge (h2c) on {url}")
        pool = httpcore.PoolManager(http1=False, http2=True)  # shared by both loops
        client = httpcore.Client(http1=False, http2=True)
        # hypercorn may still be starting: the first request waits in the backlog
        client.request("GET", url, timeout=30)

        callers = [
            Caller("loop-1", f"{per_loop} requests, {TASKS} tasks at a time, shared PoolManager"),
            Caller("loop-2", f"{per_loop} requests, {TASKS} tasks at a time, shared PoolManager"),
            Caller("sync", f"{blocking} blocking requests, Client"),
        ]
        halfway = threading.Barrier(3, timeout=30)
        pool_views: dict[str, list[httpcore.ConnectionInfo]] = {}

        def in_thread(name: str, target: Callable[[], object]) -> threading.Thread:
            def run() -> None:
                try:
                    target()
                except BaseException:
                    halfway.abort()  # the others stop waiting for this one
                    raise

            return threading.Thread(target=run, name=name)

        def loop(caller: Caller) -> None:
            pool_views[caller.name] = asyncio.run(run_loop(caller, pool, url, per_loop, halfway))

        threads = [
            in_thread("loop-1", lambda: loop(callers[0])),
            in_thread("loop-2", lambda: loop(callers[1])),
            in_thread("sync", lambda: run_sync(callers[2], client, url, blocking, halfway)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pool_infos = asyncio.run(pool.aconnections())  # asked from a third loop
        client_infos = client.connections()
        engines = [t for t in threading.enumerate() if t.name == "httpcore-engine"]
        pool.close()
        client.close()
    logger.removeHandler(log_threads)

    expected = {"loop-1": per_loop, "loop-2": per_loop, "sync": blocking}
    for caller in callers:
        print(
            f"{caller.name:6} ({caller.how}): {caller.ok}/{expected[caller.name]} OK, "
            f"{', '.join(sorted(caller.versions))}, server saw client ports {sorted(caller.ports)}"
        )
    if not halfway.broken:
        print("the two loops and the blocking thread met half-way: all three ran at once")
    views = ", ".join(f"{name}: {len(infos)}" for name, infos in sorted(pool_views.items()))
    print(
        f"PoolManager (both loops): {len(pool_infos)} connection(s) (as each loop saw it: {views})"
    )
    for info in pool_infos:
        print(f"  {info}")
    print(f"Client (sync thread): {len(client_infos)} connection(s)")
    for info in client_infos:
        print(f"  {info}")
    print("engine threads: " + ", ".join(f"{t.name} (native id {t.native_id})" for t in engines))
    writers = ", ".join(
        f"{name} ({count} records)" for (name, _), count in log_threads.threads.items()
    )
    print(f"httpcore log records written by: {writers}")

    shared = callers[0].ports == callers[1].ports and len(callers[0].ports) == 1
    success = (
        all(c.ok == expected[c.name] and c.versions == {"HTTP/2"} for c in callers)
        and shared
        and not halfway.broken
        and not callers[2].ports & callers[0].ports
        and len(pool_infos) == len(client_infos) == 1
        and all(len(infos) == 1 for infos in pool_views.values())
        and len(engines) == 1
        and {ident for _, ident in log_threads.threads} == {engines[0].ident}
    )
    print("OK" if success else "FAILED")
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main())
