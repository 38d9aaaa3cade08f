"""Exit: unclosed clients at interpreter exit, and Engine.close() with requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
import subprocess
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
import trustme

import httpcore
from tests.conftest import python_subprocess
from tests.servers import raw as handlers
from tests.servers.handles import RawFactory
from tests.servers.raw import ConnectionClosedByPeer, RawConnection, RawServer


def record_close(conn: RawConnection) -> None:
    """Keep-alive ``ok`` server that signals ("closed", how) when the client goes away.

    how: "fin" (plain EOF), "close_notify" (TLS closed cleanly: close_notify,
    then EOF), "no-close_notify" (TLS: EOF without close_notify), "reset".
    """
    tls = isinstance(conn.sock, ssl.SSLSocket)
    if tls:
        conn.sock.suppress_ragged_eofs = False  # type: ignore[attr-defined]
    try:
        while True:
            conn.read_request()
            conn.respond(b"ok")
    except ConnectionClosedByPeer:
        how = "close_notify" if tls else "fin"
        if tls:  # answer the close_notify, so the client's TLS shutdown completes
            with contextlib.suppress(OSError, ValueError):
                conn.sock.unwrap()  # type: ignore[attr-defined]
    except ssl.SSLEOFError:
        how = "no-close_notify"
    except ConnectionResetError:
        how = "reset"
    except OSError as exc:
        how = repr(exc)
    conn.server.signal("closed", how)


def wait_events(server: RawServer, name: str, n: int, timeout: float = 10.0) -> list[object]:
    return [server.wait_event(name, timeout=timeout) for _ in range(n)]


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from the script within {timeout}s"
    return proc.stdout.readline()


def exit_cleanly(proc: subprocess.Popen[bytes], line: bytes) -> float:
    """Send ``line`` (the script exits on it); the script must exit 0 with nothing on
    stderr. Returns the seconds from sending to exit."""
    start = time.monotonic()
    _, stderr = proc.communicate(line, timeout=10)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, stderr.decode()
    assert stderr == b"", stderr.decode()
    return elapsed


def test_exit_without_closing_closes_connections(
    raw: RawFactory,
    server_tls_context: ssl.SSLContext,
    tls_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    plain = raw(record_close)
    secure = raw(record_close, tls=server_tls_context)
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    script = ("-m", "tests.scripts.exit_unclosed", plain.url("/"), secure.url("/"), str(ca_file))
    with python_subprocess(*script) as proc:
        assert read_line(proc, 20) == b"done\n"
        done_at = time.monotonic()
        # the script's last atexit hook runs after httpcore's, and holds the process
        assert read_line(proc, 10) == b"holding\n"
        exit_hooks = time.monotonic() - done_at
        # so these closes come from the engine, while the process is still alive
        plain_closes = wait_events(plain, "closed", 2, timeout=5)
        secure_closes = wait_events(secure, "closed", 2, timeout=5)
        assert proc.poll() is None
        released = exit_cleanly(proc, b"go\n")
    assert plain_closes == ["fin", "fin"]  # sync Client and async PoolManager: one each
    assert secure_closes == ["close_notify", "close_notify"]
    assert plain.accepted == 2 and secure.accepted == 2
    assert exit_hooks < 3.0, f"closing at exit took {exit_hooks:.2f}s"
    assert released < 3.0


def test_exit_with_a_request_in_flight(raw: RawFactory, tmp_path: Path) -> None:
    """A daemon thread blocked in request() and an unread stream do not hold up exit."""
    hang = raw(handlers.hang_or_ok)
    script = textwrap.dedent(
        f"""
        import threading, httpcore
        client = httpcore.Client(timeout=60)
        def blocked():
            try:
                client.request("GET", {hang.url("/hang")!r})
            except httpcore.HTTPCoreError:
                pass
        threading.Thread(target=blocked, daemon=True).start()
        assert client.request("GET", {hang.url("/ok")!r}).body == b"ok"
        held = client.request("GET", {hang.url("/ok")!r}, stream=True)
        print("started", flush=True)
        input()
        """
    )
    with python_subprocess("-c", script) as proc:
        assert read_line(proc, 20) == b"started\n"
        hang.wait_event("hanging", timeout=10)
        elapsed = exit_cleanly(proc, b"\n")
    assert elapsed < 3.0, f"exit took {elapsed:.2f}s"
    assert hang.wait_event("client-closed", timeout=5) is not None


def _wait_repr(frontend: object, expected: str, timeout: float = 10.0) -> None:
    """Until ``repr(frontend)`` (a round trip to the engine) shows ``expected``."""
    deadline = time.monotonic() + timeout
    seen = repr(frontend)
    while seen != expected:
        assert time.monotonic() < deadline, f"{seen} never became {expected}"
        seen = repr(frontend)


def test_engine_close_fails_in_flight_requests_promptly(raw: RawFactory) -> None:
    """Sync threads and async tasks, on connections or queued for one: all get EngineClosed."""
    server = raw(handlers.hang_or_ok)
    engine = httpcore.Engine()
    limits = httpcore.Limits(max_connections=2)
    client = httpcore.Client(engine=engine, limits=limits, timeout=60)
    manager = httpcore.PoolManager(engine=engine, limits=limits, timeout=60)

    sync_results: list[Future[BaseException | None]] = []
    threads = []
    for i in range(3):
        result: Future[BaseException | None] = Future()
        sync_results.append(result)

        def call(i: int = i, result: Future[BaseException | None] = result) -> None:
            try:
                client.request("GET", server.url(f"/hang-sync-{i}"))
                result.set_result(None)
            except BaseException as exc:
                result.set_result(exc)

        threads.append(threading.Thread(target=call))

    async_results: Future[list[BaseException | None]] = Future()

    async def one(i: int) -> BaseException | None:
        try:
            await manager.request("GET", server.url(f"/hang-async-{i}"))
            return None
        except BaseException as exc:
            return exc

    async def gather() -> list[BaseException | None]:
        return list(await asyncio.gather(*(one(i) for i in range(3))))

    def run_async() -> None:
        try:
            async_results.set_result(asyncio.run(gather()))
        except BaseException as exc:
            async_results.set_exception(exc)

    threads.append(threading.Thread(target=run_async))
    for t in threads:
        t.start()
    try:
        wait_events(server, "hanging", 4)  # two connections per pool, server never answers
        _wait_repr(client, "<Client [active=2 queued=1 idle=0]>")
        _wait_repr(manager, "<PoolManager [active=2 queued=1 idle=0]>")
        start = time.monotonic()
        engine.close()
        closed_in = time.monotonic() - start
        for t in threads:
            t.join(5)
        woken_in = time.monotonic() - start
    finally:
        engine.close()
        for t in threads:
            t.join(5)
    assert not any(t.is_alive() for t in threads), "a caller is still blocked"
    errors = [r.result(timeout=0) for r in sync_results] + async_results.result(timeout=0)
    assert all(isinstance(e, httpcore.EngineClosed) for e in errors), errors
    assert closed_in < 2.5 and woken_in < 3.0, (closed_in, woken_in)
    # the four hanging connections were closed, not left to the server
    assert len(wait_events(server, "client-closed", 4, timeout=5)) == 4
    with pytest.raises(httpcore.EngineClosed):
        client.request("GET", server.url("/ok"))
