"""nginx with HTTP/2 (TLS + ALPN, and h2c on a plain port) as an independent server.

:func:`run_nginx` writes a config template (``CONFIG`` for the fixture ``nginx_h2``
of ``conftest.py``; variants in ``test_lifecycle.py`` and ``h2lifecycle.py``) to a
tmp dir and runs ``nginx -p DIR -c nginx.conf`` in the foreground
(``master_process off``).
Every request is logged as ``$connection $connection_requests $server_protocol
$status $request_uri``: ``$connection`` is nginx's serial number of the TCP
connection, so distinct values are the number of TCP connections used.

Locations: ``/small`` (``b"hello h2\\n"``) and ``/big`` (``BIG_SIZE`` bytes of
``app.pattern``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.servers.process import binary, check_config, free_ports, running, write_cert

BIG_SIZE = 32 * 1024 * 1024
SMALL_BODY = b"hello h2\n"


_HEAD = """\
worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections WORKER_CONNECTIONS; }}
http {{
    log_format conns '$connection $connection_requests $server_protocol $status $request_uri';
    access_log {d}/access.log conns;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
"""


def config(http: str, worker_connections: int = 4096) -> str:
    """A config template for :func:`run_nginx`: nginx in the foreground, pid,
    error log, access log (in the format :meth:`Nginx.log` reads) and temp dirs
    (which :func:`run_nginx` creates) in ``{d}``; ``http`` (directives and
    ``server`` blocks, itself a template) goes inside ``http { }``."""
    head = _HEAD.replace("WORKER_CONNECTIONS", str(worker_connections))
    return head + http + "}}\n"


CONFIG = config("""\
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{tls_port} ssl http2 backlog=1024;
        listen 127.0.0.1:{h2c_port} http2 backlog=1024;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        http2_max_concurrent_streams 128;
        location = /small {{ default_type text/plain; return 200 "hello h2\\n"; }}
        location = /big {{ alias {d}/big.bin; }}
        location = /echo-header {{ add_header X-Echo $arg_v always; return 200 "$arg_v\n"; }}
    }}
""")


@dataclass(frozen=True)
class LogLine:
    connection: int
    connection_requests: int
    protocol: str
    status: int
    uri: str


@dataclass(frozen=True)
class Nginx:
    tls_port: int  # 0: no TLS listener
    h2c_port: int
    directory: Path

    def url(self, path: str = "/small", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.tls_port}{path}"

    def h2c_url(self, path: str = "/small") -> str:
        return f"http://127.0.0.1:{self.h2c_port}{path}"

    def log(self, marker: str, expect: int, timeout: float = 10.0) -> list[LogLine]:
        """The access-log lines whose URI contains ``marker``, once there are ``expect``.

        nginx writes a line when it finalises a request, which can be just
        after the client has the whole response: poll (with a deadline) until
        all ``expect`` lines are there.
        """
        path = self.directory / "access.log"
        deadline = time.monotonic() + timeout
        while True:
            lines = []
            for raw in path.read_text().splitlines():
                conn, reqs, proto, status, uri = raw.split(" ", 4)
                if marker in uri:
                    lines.append(LogLine(int(conn), int(reqs), proto, int(status), uri))
            if len(lines) >= expect or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)  # polling a file nginx appends to, not a synchronisation point


def nginx_binary() -> str | None:
    return binary(
        "nginx", extra=("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
    )


@contextlib.contextmanager
def run_nginx(
    directory: Path, template: str, cert: trustme.LeafCert | None = None
) -> Iterator[Nginx]:
    """nginx from ``template`` in ``directory`` (foreground, no master process),
    until the ``with`` block ends; skips the test when nginx is not installed.

    ``template`` is formatted with ``d`` (the directory), ``h2c_port`` and, when
    ``cert`` is given (written to ``d/cert.pem`` and ``d/key.pem``), ``tls_port``;
    without ``cert`` the :class:`Nginx` has ``tls_port`` 0. Files the config
    serves go into ``directory`` beforehand.
    """
    exe = nginx_binary()
    if exe is None:
        pytest.skip("nginx is not installed (scripts/_env.sh installs it: APT_PACKAGES)")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    if cert is None:
        tls_port, [h2c_port] = 0, free_ports(1)
        ports = [h2c_port]
    else:
        write_cert(cert, directory)
        ports = free_ports(2)
        tls_port, h2c_port = ports
    conf = directory / "nginx.conf"
    conf.write_text(template.format(d=directory, tls_port=tls_port, h2c_port=h2c_port))
    argv = [exe, "-e", str(directory / "error.log"), "-p", str(directory), "-c", str(conf)]
    check_config([exe, "-t", "-q", *argv[1:]])
    with running(argv, directory, ports, "stdout.log"):
        yield Nginx(tls_port, h2c_port, directory)
