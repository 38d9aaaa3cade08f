"""Fixtures: real servers on 127.0.0.1 only.

* ``http_server`` (session): hypercorn in a subprocess serving ``servers/app.py``
  on a plain port and a TLS port (trustme certificate for 127.0.0.1/localhost/::1),
  HTTP/1.1 only (``alpn_protocols = ["http/1.1"]``). Started once; readiness is
  polled with ``connect()``.
* ``tls_ca`` (session): the trustme CA; ``ssl_context``: a client context trusting it.
* ``raw`` : a factory ``raw(handler, host=..., tls=...) -> RawServer`` for the
  thread-based fault servers of ``servers/raw.py``; stopped after the test.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.servers import raw as raw_servers
from tests.servers.handles import HTTPServer, RawFactory

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", port))
                return
            except OSError:
                pass
        time.sleep(0.02)  # poll interval while the subprocess boots, not a sync point
    raise RuntimeError(f"server on port {port} did not start within {timeout}s")


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(tls_ca: trustme.CA) -> trustme.LeafCert:
    return tls_ca.issue_cert("127.0.0.1", "localhost", "::1")


@pytest.fixture
def ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA (fresh per test: the library sets ALPN on it)."""
    ctx = ssl.create_default_context()
    tls_ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="session")
def http_server(
    server_cert: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HTTPServer]:
    tmp = tmp_path_factory.mktemp("hypercorn")
    cert = tmp / "cert.pem"
    key = tmp / "key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    for pem in server_cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert), append=True)
    server_cert.private_key_pem.write_to_path(str(key))
    port, tls_port = free_port(), free_port()
    while tls_port == port:
        tls_port = free_port()
    log = open(tmp / "hypercorn.log", "wb")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.run", str(port), str(tls_port), str(cert), str(key)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, proc)
        wait_listening(tls_port, proc)
        yield HTTPServer(port, tls_port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def server_tls_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side context with the 127.0.0.1/localhost certificate, ALPN http/1.1."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@pytest.fixture
def raw() -> Iterator[RawFactory]:
    """``raw(handler, host="127.0.0.1", tls=None)`` starts a raw-socket server for this test."""
    servers: list[raw_servers.RawServer] = []

    def start(
        handler: raw_servers.Handler, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> raw_servers.RawServer:
        server = raw_servers.RawServer(handler, host=host, tls=tls).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    errors = [e for s in servers for e in s.handler_errors]
    assert not errors, errors


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
