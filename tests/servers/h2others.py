"""More independent HTTP/2 servers from Debian: nghttpd, h2o and Apache with mod_http2.

Used by ``test_h2_servers.py``, whose session fixtures call :func:`run_nghttpd`,
:func:`run_h2o` and :func:`run_apache`. Each writes a minimal config into its own
directory, runs the server in the foreground as a child process (no system-wide
config, no systemd, pid and log files in that directory) on free 127.0.0.1 ports,
waits for it with ``connect()`` polling and stops it with SIGTERM on the way out.

Every server offers TLS with ALPN ``h2`` (the trustme certificate of the
``server_cert`` fixture) and h2c with prior knowledge on a plain port, and serves
``htdocs/small`` (:data:`SMALL_BODY`), ``htdocs/big`` (:data:`BIG_SIZE` bytes of
``app.pattern``) and ``POST /upload``:

* nghttpd: ``--echo-upload`` answers any POST with the request body; TLS and
  h2c are two processes (``--no-tls`` is all or nothing);
* h2o: an mruby handler that reads ``rack.input`` and returns it;
* Apache: a CGI shell script answering the hex SHA-256 of the body
  (``mod_reflector`` answers an HTTP/2 POST with an empty body and RST_STREAM;
  ``mod_lua``'s ``r:requestbody()`` refuses a body without Content-Length,
  which is what a streamed upload over HTTP/2 is). :attr:`H2Server.upload_reply`
  says which kind of answer to expect.

Apache as root drops its workers to ``www-data`` (or ``nobody``): its directory
must then be readable by that user, which pytest's 0700 tmp dirs are not, so the
caller passes a world-readable directory (:func:`world_readable_dir`).

mod_http2 has no per-connection request limit, so there is no GOAWAY-after-N
configuration here: ``MaxKeepAliveRequests 10`` and ``KeepAlive Off`` do not apply
to HTTP/2 sessions (15 requests went over one connection, Apache 2.4.71 / mod_http2
2.0.42); the GOAWAY mod_http2 does send comes from a "stopping" child
(``MaxConnectionsPerChild``, graceful restart), and then the event MPM also drops
fresh, still idle h2 connections without any GOAWAY (curl hangs, a lone GET gets
ECONNRESET), which no client can be asked to survive.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.app import pattern
from tests.servers.process import check_config, free_ports, running

BIG_SIZE = 32 * 1024 * 1024
SMALL_BODY = b"hello h2\n"
UPLOAD_PATH = "/upload"


@dataclass(frozen=True)
class H2Server:
    name: str
    tls_port: int
    h2c_port: int
    directory: Path
    upload_reply: str  # "echo": the body comes back; "sha256": its hex digest does
    has_access_log: bool  # lines "remote_port protocol status uri?query" in directory/access.log

    def url(self, path: str = "/small") -> str:
        return f"https://127.0.0.1:{self.tls_port}{path}"

    def h2c_url(self, path: str = "/small") -> str:
        return f"http://127.0.0.1:{self.h2c_port}{path}"

    def upload_digest(self, reply: bytes) -> str:
        """The SHA-256 (hex) of the request body, as told by the answer to ``POST /upload``."""
        if self.upload_reply == "echo":
            return hashlib.sha256(reply).hexdigest()
        return reply.split()[0].decode("ascii")

    def access_log(self, marker: str, expect: int, timeout: float = 10.0) -> list[str]:
        """Access-log lines (``remote_port protocol status uri?query``) containing
        ``marker``, once there are ``expect`` of them (or the deadline has passed): the
        server writes a line when it finalises a request, which can be just after the
        client has the whole response. The remote port tells TCP connections apart."""
        path = self.directory / "access.log"
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in path.read_text().splitlines() if marker in line]
            if len(lines) >= expect or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)  # polling a file the server appends to, not a synchronisation point


def write_htdocs(htdocs: Path) -> None:
    htdocs.mkdir(parents=True, exist_ok=True)
    (htdocs / "small").write_bytes(SMALL_BODY)
    (htdocs / "big").write_bytes(pattern(BIG_SIZE))


@contextlib.contextmanager
def world_readable_dir(prefix: str) -> Iterator[Path]:
    """A fresh 0755 directory under the system tmp dir, removed on the way out."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- nghttpd ---------------------------------------------------------------------------


@contextlib.contextmanager
def run_nghttpd(exe: str, d: Path, cert: Path, key: Path) -> Iterator[H2Server]:
    """Two nghttpd processes on ``d/htdocs``: TLS (ALPN h2) and ``--no-tls`` (h2c)."""
    write_htdocs(d / "htdocs")
    tls_port, h2c_port = free_ports(2)
    common = [exe, "--echo-upload", f"--htdocs={d / 'htdocs'}", "--address=127.0.0.1"]
    with (
        running([*common, str(tls_port), str(key), str(cert)], d, [tls_port], "tls.log"),
        running([*common, "--no-tls", str(h2c_port)], d, [h2c_port], "h2c.log"),
    ):
        yield H2Server("nghttpd", tls_port, h2c_port, d, "echo", has_access_log=False)


# -- h2o -------------------------------------------------------------------------------

H2O_CONFIG = """\
pid-file: {d}/h2o.pid
error-log: {d}/error.log
access-log:
  path: {d}/access.log
  format: "%{{remote}}p %H %s %U%q"
{user}num-threads: 2
listen:
  host: 127.0.0.1
  port: {tls_port}
  ssl:
    certificate-file: {cert}
    key-file: {key}
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
listen:
  host: 127.0.0.1
  port: {h2c_port}
hosts:
  default:
    paths:
      /upload:
        mruby.handler: |
          Proc.new do |env|
            body = env["rack.input"].read
            [200, {{"content-type" => "application/octet-stream"}}, [body]]
          end
      /:
        file.dir: {d}/htdocs
"""


@contextlib.contextmanager
def run_h2o(exe: str, d: Path, cert: Path, key: Path) -> Iterator[H2Server]:
    """h2o: TLS (ALPN h2) and h2c on a plain port, files from ``d/htdocs``, mruby ``/upload``.

    Started as root without ``user:``, h2o would setuid to ``nobody``, who cannot
    read pytest's tmp dir: ``user: root`` keeps it as it is."""
    write_htdocs(d / "htdocs")
    tls_port, h2c_port = free_ports(2)
    user = "user: root\n" if os.geteuid() == 0 else ""
    conf = d / "h2o.conf"
    conf.write_text(
        H2O_CONFIG.format(d=d, user=user, tls_port=tls_port, h2c_port=h2c_port, cert=cert, key=key)
    )
    check_config([exe, "-t", "-c", str(conf)])
    with running([exe, "-c", str(conf)], d, [tls_port, h2c_port], "stdout.log"):
        yield H2Server("h2o", tls_port, h2c_port, d, "echo", has_access_log=True)


# -- Apache httpd + mod_http2 ----------------------------------------------------------

APACHE_CONFIG = """\
ServerRoot {d}
ServerName 127.0.0.1
PidFile {d}/httpd.pid
DefaultRuntimeDir {d}
Mutex file:{d} default
ErrorLog {d}/error.log
LogLevel warn
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule alias_module {m}/mod_alias.so
LoadModule cgi_module {m}/mod_cgi.so
LoadModule ssl_module {m}/mod_ssl.so
LoadModule http2_module {m}/mod_http2.so
{user}
{mpm}
Listen 127.0.0.1:{tls_port} https
Listen 127.0.0.1:{h2c_port} http
Protocols h2 h2c http/1.1
H2MaxSessionStreams 100
KeepAliveTimeout 600
Timeout 60
SSLSessionCache none
LogFormat "%{{remote}}p %H %>s %U%q" conns
CustomLog {d}/access.log conns
DocumentRoot {d}/htdocs
<Directory />
    Require all granted
</Directory>
ScriptAlias /upload {d}/cgi/sha256.cgi
<VirtualHost 127.0.0.1:{tls_port}>
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
</VirtualHost>
"""

# One child process with plenty of threads: a connection lives as long as the client keeps it.
APACHE_MPM = """\
StartServers 1
ServerLimit 1
ThreadsPerChild 64
MinSpareThreads 1
MaxSpareThreads 64
MaxRequestWorkers 64
MaxConnectionsPerChild 0"""

SHA256_CGI = """\
#!/bin/sh
# Reads the whole body first (writing while Apache is still feeding stdin could deadlock).
printf 'Content-Type: text/plain\\r\\n\\r\\n'
exec sha256sum
"""


def apache_modules_dir() -> Path | None:
    for candidate in (
        "/usr/lib/apache2/modules",
        "/usr/lib64/httpd/modules",
        "/usr/lib/httpd/modules",
    ):
        if (Path(candidate) / "mod_http2.so").exists():
            return Path(candidate)
    return None


def _apache_user() -> str:
    if os.geteuid() != 0:
        return ""  # not root: Apache does not change users (and User would need to exist)
    for name in ("www-data", "apache", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return f"User {name}\nGroup #{pwd.getpwnam(name).pw_gid}"
    raise RuntimeError("no unprivileged user for Apache's workers")


@contextlib.contextmanager
def run_apache(exe: str, modules: Path, d: Path, cert: Path, key: Path) -> Iterator[H2Server]:
    """``apache2 -DFOREGROUND -f d/httpd.conf`` with mod_http2: TLS (ALPN h2) and h2c."""
    write_htdocs(d / "htdocs")
    (d / "cgi").mkdir()
    script = d / "cgi" / "sha256.cgi"
    script.write_text(SHA256_CGI)
    script.chmod(0o755)
    tls_port, h2c_port = free_ports(2)
    conf = d / "httpd.conf"
    conf.write_text(
        APACHE_CONFIG.format(
            d=d,
            m=modules,
            user=_apache_user(),
            mpm=APACHE_MPM,
            tls_port=tls_port,
            h2c_port=h2c_port,
            cert=cert,
            key=key,
        )
    )
    check_config([exe, "-t", "-f", str(conf)])
    argv = [exe, "-DFOREGROUND", "-f", str(conf)]
    with running(argv, d, [tls_port, h2c_port], "stdout.log"):
        yield H2Server("apache2", tls_port, h2c_port, d, "sha256", has_access_log=True)
