"""httpcore demo: sync threads and async tasks on several loops sharing one engine.

Starts its own HTTP/1.1 keep-alive server on 127.0.0.1 (an asyncio server in a
thread, on a free port), then:

1. 8 threads share one ``httpcore.Client``;
2. 100 async tasks share one ``httpcore.PoolManager`` on the main thread's loop
   while, at the same time, a second event loop in another thread runs 100
   tasks through the top-level ``httpcore.request``;
3. one streamed download, chunk by chunk.

Every request above goes through the one process-wide engine thread
(``httpcore-engine``). Run with ``bash scripts/demo.sh`` or
``.venv/bin/python examples/demo.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpcore

SYNC_THREADS = 8
REQUESTS_PER_THREAD = 50
ASYNC_TASKS = 100
STREAM_CHUNKS = 64
STREAM_CHUNK = b"x" * 16384
HELLO = b"Hello, world!\n"


# --------------------------------------------------------------------------
# A small HTTP/1.1 keep-alive server (asyncio streams, in its own thread).


class _Connections:
    """The server's open connections, so that stopping can close them cleanly."""

    def __init__(self) -> None:
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.writers.add(writer)
        self.tasks.add(task)
        try:
            await _serve_connection(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away, or the server is stopping
        finally:
            self.writers.discard(writer)
            self.tasks.discard(task)
            writer.close()

    async def close_all(self) -> None:
        for writer in list(self.writers):
            writer.close()  # the handler sees EOF and returns
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        _method, target, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length:
            await reader.readexactly(length)
        if target == "/stream":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (len(STREAM_CHUNK), STREAM_CHUNK)
            for _ in range(STREAM_CHUNKS):
                writer.write(chunk)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(HELLO), HELLO)
            )
        await writer.drain()
        if headers.get("connection", "").lower() == "close":
            return


class DemoServer:
    """An asyncio HTTP/1.1 server running on its own loop in a thread."""

    def __init__(self) -> None:
        self._ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="demo-server", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        port = self._ready.result(timeout=10)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # report start-up failures to __enter__
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connections = _Connections()
        server = await asyncio.start_server(connections.handle, "127.0.0.1", 0, backlog=512)
        async with server:
            self._ready.set_result(server.sockets[0].getsockname()[1])
            await self._stop.wait()
            server.close()
            await connections.close_all()


# --------------------------------------------------------------------------
# The demo.


def engine_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "httpcore-engine"]


def show_connections(infos: list[httpcore.ConnectionInfo]) -> None:
    states = Counter(info.state for info in infos)
    served = sum(info.requests_served for info in infos)
    print(f"  connections(): {len(infos)} {dict(states)}, requests served on them: {served}")
    for info in infos[:3]:
        print(f"    {info}")
    if len(infos) > 3:
        print(f"    ... and {len(infos) - 3} more")


def sync_demo(url: str) -> int:
    print(f"[sync] {SYNC_THREADS} threads x {REQUESTS_PER_THREAD} requests on one Client")
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    with httpcore.Client() as client:

        def worker() -> None:
            for _ in range(REQUESTS_PER_THREAD):
                response = client.request("GET", url)
                assert response.body == HELLO, response.body
                with lock:
                    statuses[response.status_code] += 1

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(SYNC_THREADS) as executor:
            for future in [executor.submit(worker) for _ in range(SYNC_THREADS)]:
                future.result()
        elapsed = time.perf_counter() - start
        total = statuses[200]
        print(
            f"  {total} responses {dict(statuses)} in {elapsed * 1000:.0f} ms "
            f"({total / elapsed:.0f} req/s)"
        )
        show_connections(client.connections())
        print(f"  repr: {client!r}")
    return total


async def _pool_tasks(url: str) -> tuple[Counter[int], float, str, list[httpcore.ConnectionInfo]]:
    async with httpcore.PoolManager() as pool:
        start = time.perf_counter()
        responses = await asyncio.gather(*(pool.request("GET", url) for _ in range(ASYNC_TASKS)))
        elapsed = time.perf_counter() - start
        return (
            Counter(r.status_code for r in responses),
            elapsed,
            # repr() asks the engine and waits: off this loop, in a thread
            await asyncio.to_thread(repr, pool),
            await pool.aconnections(),
        )


async def _toplevel_tasks(url: str) -> tuple[Counter[int], float]:
    start = time.perf_counter()
    responses = await asyncio.gather(*(httpcore.request("GET", url) for _ in range(ASYNC_TASKS)))
    return Counter(r.status_code for r in responses), time.perf_counter() - start


def async_demo(url: str) -> int:
    print(
        f"[async] {ASYNC_TASKS} tasks on a PoolManager (main thread's loop) and, at the "
        f"same time, {ASYNC_TASKS} tasks with httpcore.request on a second loop in another thread"
    )
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="second-loop") as executor:
        other = executor.submit(asyncio.run, _toplevel_tasks(url))
        statuses, elapsed, pool_repr, infos = asyncio.run(_pool_tasks(url))
        other_statuses, other_elapsed = other.result()
    print(
        f"  PoolManager:     {sum(statuses.values())} responses {dict(statuses)} "
        f"in {elapsed * 1000:.0f} ms"
    )
    show_connections(infos)
    print(f"  repr: {pool_repr}")
    print(
        f"  httpcore.request: {sum(other_statuses.values())} responses "
        f"{dict(other_statuses)} in {other_elapsed * 1000:.0f} ms (second loop)"
    )
    return statuses[200] + other_statuses[200]


def stream_demo(url: str) -> int:
    print("[stream] one chunked download read with stream=True")
    with httpcore.Client() as client:
        start = time.perf_counter()
        with client.request("GET", url + "/stream", stream=True) as response:
            chunks = 0
            size = 0
            for part in response.stream():
                chunks += 1
                size += len(part)
        elapsed = time.perf_counter() - start
    print(
        f"  {response.http_version} {response.status_code}: {size} bytes in {chunks} chunks, "
        f"{elapsed * 1000:.1f} ms"
    )
    return 1 if size == STREAM_CHUNKS * len(STREAM_CHUNK) else 0


H2_THREADS = 32
H2_PER_THREAD = 20


def h2_demo() -> int:
    """Many blocking threads, one HTTP/2 connection (h2c to hypercorn)."""
    import socket
    import subprocess

    print(f"[http2] {H2_THREADS} threads x {H2_PER_THREAD} requests on one Client (h2c, hypercorn)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    here = str(Path(__file__).resolve().parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "h2app:app", "--bind", f"127.0.0.1:{port}"],
        cwd=here,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("  hypercorn did not start; skipped")
                    return -1
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/"
        with httpcore.Client(http1=False, http2=True) as client:

            def worker() -> int:
                ok = 0
                for _ in range(H2_PER_THREAD):
                    response = client.request("GET", url)
                    ok += response.status_code == 200 and response.http_version == "HTTP/2"
                return ok

            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(H2_THREADS) as executor:
                total = sum(executor.map(lambda _: worker(), range(H2_THREADS)))
            elapsed = time.perf_counter() - start
            print(f"  {total} HTTP/2 responses in {elapsed * 1000:.0f} ms")
            infos = client.connections()
            show_connections(infos)
            print(f"  -> {len(infos)} TCP connection(s) for {H2_THREADS} threads")
        return total
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    print(f"httpcore {httpcore.__version__} on Python {sys.version.split()[0]}")
    with DemoServer() as url:
        print(f"local server: {url}\n")
        total = sync_demo(url)
        print()
        total += async_demo(url)
        print()
        streamed = stream_demo(url)
        print()
    h2_total = h2_demo()
    print()
    engines = engine_threads()
    expected = SYNC_THREADS * REQUESTS_PER_THREAD + 2 * ASYNC_TASKS
    h2_ok = h2_total in (-1, H2_THREADS * H2_PER_THREAD)
    print(f"engine threads: {engines} (one engine served every caller above)")
    print(f"total: {total}/{expected} requests OK, stream {'OK' if streamed else 'FAILED'}")
    print("server stopped")
    return 0 if total == expected and streamed and h2_ok and len(engines) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
