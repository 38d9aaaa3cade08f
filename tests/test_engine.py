"""The engine thread: default and explicit engines, closing, thread guards, introspection, logs."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

import httpcore
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory

ROOT = Path(__file__).resolve().parent.parent


def _engine_thread_ids(records: list[logging.LogRecord]) -> set[int]:
    return {r.thread for r in records if r.thread is not None}


def _thread_by_ident(ident: int) -> threading.Thread | None:
    return next((t for t in threading.enumerate() if t.ident == ident), None)


def test_default_engine_thread_is_named_daemon(
    http_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="httpcore"), httpcore.Client() as client:
        client.request("GET", http_server.url())
    records = [r for r in caplog.records if r.name.startswith("httpcore")]
    assert records, "no DEBUG records from the engine"
    idents = _engine_thread_ids(records)
    assert len(idents) == 1
    ident = idents.pop()
    assert ident != threading.get_ident()
    thread = _thread_by_ident(ident)
    assert thread is not None and thread.is_alive()
    assert thread.name == "httpcore-engine"
    assert thread.daemon


def test_default_engine_shared_by_clients(
    http_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="httpcore"):
        with httpcore.Client() as a, httpcore.Client() as b:
            a.request("GET", http_server.url())
            b.request("GET", http_server.url())
    assert len(_engine_thread_ids([r for r in caplog.records if r.name == "httpcore"])) == 1


def test_explicit_engine_lifecycle(http_server: HTTPServer) -> None:
    before = {t.ident for t in threading.enumerate()}
    engine = httpcore.Engine()
    new = [t for t in threading.enumerate() if t.ident not in before]
    assert len(new) == 1
    thread = new[0]
    assert thread.is_alive()
    assert thread.daemon
    with httpcore.Client(engine=engine) as client:
        assert client.request("GET", http_server.url()).status_code == 200
    engine.close()
    assert not thread.is_alive()
    engine.close()  # idempotent
    with pytest.raises(httpcore.EngineClosed), httpcore.Client(engine=engine) as client:
        client.request("GET", http_server.url())


def test_engine_context_manager_closes_connections(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Engine() as engine:
        client = httpcore.Client(engine=engine)
        assert client.request("GET", server.url("/")).body == b"ok"
        assert client.connections()[0].state == "idle"
    # the server saw its keep-alive connection closed by the engine's close()
    assert server.wait_event("conn-done", timeout=5) == 0
    with pytest.raises(httpcore.EngineClosed):
        client.request("GET", server.url("/"))


def test_in_flight_request_fails_with_engine_closed(raw: RawFactory) -> None:
    server = raw(handlers.hang_or_ok)
    engine = httpcore.Engine()
    client = httpcore.Client(engine=engine, timeout=30.0)
    result: Future[BaseException | None] = Future()

    def call() -> None:
        try:
            client.request("GET", server.url("/hang"))
            result.set_result(None)
        except BaseException as exc:
            result.set_result(exc)

    t = threading.Thread(target=call)
    t.start()
    server.wait_event("hanging")
    engine.close()
    t.join(10)
    assert isinstance(result.result(timeout=1), httpcore.EngineClosed)


def test_in_flight_stream_fails_with_engine_closed(http_server: HTTPServer) -> None:
    engine = httpcore.Engine()
    client = httpcore.Client(engine=engine)
    response = client.request("GET", http_server.url("/bytes/8000000"), stream=True)
    it = response.stream()
    next(it)
    engine.close()
    with pytest.raises(httpcore.EngineClosed):
        for _ in it:
            pass


def test_request_on_closed_client(http_server: HTTPServer) -> None:
    client = httpcore.Client()
    assert client.request("GET", http_server.url()).status_code == 200
    client.close()
    with pytest.raises(httpcore.EngineClosed):
        client.request("GET", http_server.url())
    client.close()  # idempotent
    # other clients on the default engine are unaffected
    with httpcore.Client() as other:
        assert other.request("GET", http_server.url()).status_code == 200


def _run_on_engine_thread(engine: httpcore.Engine, fn: object) -> BaseException | None:
    """Schedule ``fn`` on the engine's loop and return what it raised."""
    loop = engine._loop  # type: ignore[attr-defined]  # the one way onto the engine thread
    done: Future[BaseException | None] = Future()

    def wrapper() -> None:
        try:
            fn()  # type: ignore[operator]
            done.set_result(None)
        except BaseException as exc:
            done.set_result(exc)

    loop.call_soon_threadsafe(wrapper)
    return done.result(timeout=5)


def test_sync_request_from_engine_thread_raises_runtime_error(http_server: HTTPServer) -> None:
    with httpcore.Engine() as engine:
        client = httpcore.Client(engine=engine)
        error = _run_on_engine_thread(engine, lambda: client.request("GET", http_server.url()))
        assert isinstance(error, RuntimeError)
        assert "engine thread" in str(error)
        error = _run_on_engine_thread(engine, client.connections)
        assert isinstance(error, RuntimeError)
        error = _run_on_engine_thread(engine, engine.close)
        assert isinstance(error, RuntimeError)
        # the engine survived and still serves requests
        assert client.request("GET", http_server.url()).status_code == 200


def test_slow_reader_does_not_block_others(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        held = [
            client.request("GET", http_server.url("/bytes/8000000"), stream=True) for _ in range(3)
        ]
        start = time.monotonic()
        for _ in range(20):
            assert client.request("GET", http_server.url()).status_code == 200
        assert time.monotonic() - start < 5
        for r in held:
            r.close()


def test_connections_introspection(http_server: HTTPServer, ssl_context: object) -> None:
    with httpcore.Client(ssl=ssl_context) as client:  # type: ignore[arg-type]
        assert client.connections() == []
        client.request("GET", http_server.url())
        client.request("GET", http_server.https_url())
        with client.request("GET", http_server.url("/bytes/8000000"), stream=True):
            infos = sorted(client.connections(), key=lambda c: (c.origin, c.state))
            assert repr(client) == "<Client [active=1 queued=0 idle=1]>"
        origins = [(c.origin, c.state, c.active_streams) for c in infos]
        assert origins == [
            (http_server.base_url, "active", 1),
            (http_server.https_base_url, "idle", 0),
        ]
        assert all(c.http_version == "HTTP/1.1" for c in infos)
    assert repr(client) in ("<Client [closed]>", "<Client [active=0 queued=0 idle=0]>")


def test_debug_logging(
    http_server: HTTPServer, ssl_context: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="httpcore"):
        with httpcore.Engine() as engine:
            client = httpcore.Client(engine=engine, ssl=ssl_context)  # type: ignore[arg-type]
            client.request("GET", http_server.url())
            client.request("GET", http_server.url())
            client.request("GET", http_server.https_url())
    messages = [r.getMessage() for r in caplog.records if r.name == "httpcore"]
    text = "\n".join(messages)

    def having(*needles: str) -> list[str]:
        return [m for m in messages if all(n in m for n in needles)]

    assert len(having("connection opened", "connection_id=")) == 2, text
    assert having("connection opened", "tls=", "alpn=http/1.1"), text
    assert having("connection opened", "tls=TLSv1."), text
    assert len(having("connection reused")) == 1, text
    assert len(having("request started", "request_id=")) == 3, text
    assert len(having("head received", "request_id=")) == 3, text
    assert len(having("request ended", "request_id=")) == 3, text
    assert len(having("connection closed", "reason=")) == 2, text
    ids = {m.split("request_id=")[1].split()[0] for m in having("request started")}
    assert len(ids) == 3


def test_debug_logging_failure(closed_port: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="httpcore"), httpcore.Client() as client:
        with pytest.raises(httpcore.ConnectError):
            client.request("GET", f"http://127.0.0.1:{closed_port}/")
    assert any("request failed" in r.getMessage() for r in caplog.records)


def test_no_logging_when_disabled(
    http_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="httpcore"), httpcore.Client() as client:
        client.request("GET", http_server.url())
    assert [r for r in caplog.records if r.name == "httpcore"] == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_default_engine_replaced_in_forked_child(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        assert client.request("GET", http_server.url()).status_code == 200
        pid = os.fork()
        if pid == 0:  # child: must get a fresh engine, not hang on the parent's dead thread
            code = 1
            try:
                ok = client.request("GET", http_server.url(), timeout=5).status_code == 200
                with httpcore.Client() as fresh:
                    ok = ok and fresh.request("GET", http_server.url()).status_code == 200
                code = 0 if ok else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "forked child hung"
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.request("GET", http_server.url()).status_code == 200  # parent unaffected


def test_interpreter_exit_with_open_connections(http_server: HTTPServer) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, httpcore
        client = httpcore.Client()
        assert client.request("GET", {http_server.url()!r}).status_code == 200
        held = client.request("GET", {http_server.url("/bytes/8000000")!r}, stream=True)
        async def main():
            return (await httpcore.request("GET", {http_server.url()!r})).status_code
        assert asyncio.run(main()) == 200
        print("done")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=20, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.strip() == b"done"
    assert proc.stderr == b"", proc.stderr.decode()


def test_blocked_upload_producer_does_not_block_engine(http_server: HTTPServer) -> None:
    release = threading.Event()
    entered = threading.Event()

    def producer():  # type: ignore[no-untyped-def]
        yield b"a" * 1000
        entered.set()
        release.wait(20)  # a producer stuck on its caller's thread
        yield b"b" * 1000

    with httpcore.Client() as client:
        result: Future[bytes] = Future()

        def upload() -> None:
            try:
                result.set_result(
                    client.request("POST", http_server.url("/upload"), body=producer()).body
                )
            except BaseException as exc:
                result.set_exception(exc)

        t = threading.Thread(target=upload)
        t.start()
        try:
            assert entered.wait(10)
            start = time.monotonic()
            for _ in range(10):
                assert client.request("GET", http_server.url()).status_code == 200
            assert time.monotonic() - start < 5
            assert not result.done()
        finally:
            release.set()
            t.join(20)
        assert b'"length": 2000' in result.result(timeout=1)


def test_zero_read_timeout_on_uvloop_is_a_timeout_not_a_bug(h2_server: HTTPServer) -> None:
    """Regression: uvloop's call_at with a deadline (nearly) past returns a
    plain Handle, without ``when()``; streams started beside one with a zero
    read timeout, on the same HTTP/2 connection, used to hit an engine bug."""
    pytest.importorskip("uvloop")
    import asyncio

    url = f"http://127.0.0.1:{h2_server.port}/echo"
    zero = httpcore.Timeout(5.0, read=0.0)

    async def main(engine: httpcore.Engine) -> set[str]:
        outcomes: set[str] = set()
        async with httpcore.PoolManager(engine=engine, http1=False) as pool:
            await pool.request("GET", url)
            for _ in range(20):
                results = await asyncio.gather(
                    pool.request("GET", url, timeout=zero),
                    pool.request("GET", url, timeout=zero),
                    pool.request("GET", url),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, httpcore.ReadTimeout):
                        outcomes.add("timeout")
                    elif isinstance(result, BaseException):
                        outcomes.add(repr(result))
                    else:
                        outcomes.add("ok")
        return outcomes

    with httpcore.Engine(loop="uvloop") as engine:
        outcomes = asyncio.run(main(engine))
    assert outcomes <= {"ok", "timeout"}, outcomes


_CHURN = """
import resource, sys, threading
from httpcore.engine.runner import Engine
engine = Engine()
faults = []
def churn():
    # What a download does to malloc: chunks of up to 256 KiB made on one
    # thread, all freed soon after.
    start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(200):
        chunks = [b"x" * 262144 for _ in range(4)]
        del chunks
    middle = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    # And what an application may do with big buffers: 32 MiB sliced down.
    piece = b"x" * (32 << 20)
    for _ in range(64):
        piece = piece[16384:]
    end = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    faults.extend((middle - start, end - middle))
thread = threading.Thread(target=churn)
thread.start()
thread.join()
engine.close()
print(*faults)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_engine_keeps_freed_chunk_memory_mapped() -> None:
    """An engine fixes glibc's mmap and trim thresholds (tune_malloc): body
    chunks freed by the caller do not give their pages back to the kernel
    only to fault them in again for the next chunk (one fault per 4 KiB
    received)."""

    def faults(tune: str | None) -> tuple[int, int]:
        env = dict(os.environ)
        env.pop("HTTPCORE_MALLOC_TUNE", None)
        if tune is not None:
            env["HTTPCORE_MALLOC_TUNE"] = tune
        out = subprocess.run(
            [sys.executable, "-c", _CHURN], capture_output=True, text=True, env=env, timeout=60
        )
        assert out.returncode == 0, out.stderr
        chunks, slices = out.stdout.split()
        return int(chunks), int(slices)

    tuned, untouched = faults(None), faults("0")
    assert untouched[0] > 20_000  # 200 x 1 MiB refaulted: what the tuning is for
    assert tuned[0] < untouched[0] // 10, (tuned, untouched)
    # A pad or trim threshold alone turns glibc's sliding mmap threshold off:
    # every copy of the big buffer would be a fresh mmap (64 x 8192 faults).
    assert tuned[1] < 4 * 8192 + untouched[1], (tuned, untouched)
