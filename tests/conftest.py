"""Fixtures: real servers on 127.0.0.1 only.

* ``http_server`` (session): hypercorn in a subprocess serving ``servers/app.py``
  on a plain port and a TLS port (trustme certificate for 127.0.0.1/localhost/::1),
  HTTP/1.1 only (``alpn_protocols = ["http/1.1"]``). Started once; readiness is
  polled with ``connect()``.
* ``tls_ca`` (session): the trustme CA; ``ssl_context``: a client context trusting it.
* ``raw`` : a factory ``raw(handler, host=..., tls=...) -> RawServer`` for the
  thread-based fault servers of ``servers/raw.py``; stopped after the test.

HTTP/2 (``test_h2_*.py``):

* ``h2_server`` (session): a second hypercorn (``servers/run.py ... h2``) serving the
  same app with ALPN ``h2``/``http/1.1`` on its TLS port and h2c (prior
  knowledge) on its plain port; 100 streams per connection.
* ``nginx_h2`` (session): nginx with ``http2`` over TLS and h2c, config written to
  a tmp dir, access log with ``$connection`` to count TCP connections
  (``servers/h2nginx.py``'s ``run_nginx``). Skipped only when no nginx binary is
  installed.
* ``server_h2_context``: a server TLS context offering only ALPN ``h2``, for the
  ``h2`` fault servers of ``servers/h2faults.py`` (run through ``raw``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.servers import raw as raw_servers
from tests.servers.app import pattern
from tests.servers.h2nginx import BIG_SIZE as NGINX_BIG_SIZE
from tests.servers.h2nginx import CONFIG as NGINX_CONFIG
from tests.servers.h2nginx import Nginx, run_nginx
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.process import free_port, free_ports, stop_process, wait_listening, write_cert

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def python_subprocess(
    *args: str, stdin: int | None = subprocess.PIPE
) -> Iterator[subprocess.Popen[bytes]]:
    """``python *args`` in the repository root, stdout and stderr piped (stdin too,
    unless ``stdin=None``); killed on the way out if it is still running."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
    """hypercorn, HTTP/1.1 only: plain on ``port``, TLS (ALPN http/1.1) on ``tls_port``."""
    yield from _hypercorn(server_cert, tmp_path_factory.mktemp("hypercorn"), h2=False)


def _hypercorn(cert_: trustme.LeafCert, tmp: Path, *, h2: bool) -> Iterator[HTTPServer]:
    cert, key = write_cert(cert_, tmp)
    port, tls_port = free_ports(2)
    args = [str(port), str(tls_port), str(cert), str(key), *(["h2"] if h2 else [])]
    with open(tmp / "hypercorn.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.servers.run", *args],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_listening(port, proc)
            wait_listening(tls_port, proc)
            yield HTTPServer(port, tls_port)
        finally:
            stop_process(proc)


def _server_context(cert: trustme.LeafCert, alpn: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ctx.set_alpn_protocols([alpn])
    return ctx


@pytest.fixture
def server_tls_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side context with the 127.0.0.1/localhost certificate, ALPN http/1.1."""
    return _server_context(server_cert, "http/1.1")


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
    return free_port()


@pytest.fixture
def backlogged_port() -> Iterator[int]:
    """A listener whose accept queue is full: further connects hang (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):  # listen(0) admits one or two pending connections
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        pytest.skip("this kernel accepts connections beyond the listen backlog")
    except TimeoutError:
        pass
    finally:
        probe.close()
    yield port
    for s in fillers:
        s.close()
    listener.close()


# -- HTTP/2 -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def h2_server(
    server_cert: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HTTPServer]:
    """hypercorn with HTTP/2: ALPN h2 on ``tls_port``, h2c prior knowledge on ``port``."""
    yield from _hypercorn(server_cert, tmp_path_factory.mktemp("hypercorn-h2"), h2=True)


@pytest.fixture(scope="session")
def nginx_h2(
    server_cert: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """nginx (``http2`` over TLS and h2c) from a config in a tmp dir."""
    d = tmp_path_factory.mktemp("nginx")
    (d / "big.bin").write_bytes(pattern(NGINX_BIG_SIZE))
    with run_nginx(d, NGINX_CONFIG, server_cert) as nginx:
        yield nginx


@pytest.fixture
def server_h2_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side context with the 127.0.0.1/localhost certificate, ALPN h2 only."""
    return _server_context(server_cert, "h2")
