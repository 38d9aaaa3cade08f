"""SOCKS5 servers for ``test_socks.py``.

* ``run_dante``: Debian's ``danted`` in the foreground from a config in a tmp dir,
  listening on 127.0.0.1, no authentication, CONNECT to anywhere for loopback
  clients. It runs as whoever runs the tests (root or not).
* ``Socks5``: a small SOCKS5 server (RFC 1928, username/password of RFC 1929)
  run as a handler of ``raw.RawServer`` (a thread per connection). It records
  what it was asked (``requests``: command, address type, host, port, user), so a
  test can tell a locally resolved address (socks5://) from a name left to the
  proxy (socks5h://). Dante's own ``username`` method checks the system password
  database: it needs root and a real account, too much to set up for a test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import selectors
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.process import binary, check_config, free_port, running
from tests.servers.raw import ConnectionClosedByPeer, RawConnection

DANTED = binary("danted", extra=("/usr/sbin/danted",))

DANTE_CONFIG = """\
logoutput: stderr
internal: 127.0.0.1 port = {port}
external: lo
clientmethod: none
socksmethod: none
client pass {{
    from: 127.0.0.0/8 to: 0/0
    log: error
}}
client pass {{
    from: ::1/128 to: 0/0
    log: error
}}
socks pass {{
    from: 127.0.0.0/8 to: 0/0
    command: connect
    log: error connect
}}
socks pass {{
    from: ::1/128 to: 0/0
    command: connect
    log: error connect
}}
"""


@dataclass(frozen=True)
class Dante:
    port: int
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.directory / "danted.log").read_text(errors="replace")

    def relayed(self, out_port: int, target_port: int) -> bool:
        """Whether dante logged a session it connected from ``out_port`` (the client
        port the origin saw) to ``target_port``. The line is written when the
        session starts, before any of its data is relayed."""
        return f"-> 127.0.0.1.{out_port} 127.0.0.1.{target_port}" in self.log()


@contextlib.contextmanager
def run_dante(directory: Path) -> Iterator[Dante]:
    """``danted`` on a free loopback port until the block ends."""
    assert DANTED is not None
    port = free_port()
    conf = directory / "danted.conf"
    conf.write_text(DANTE_CONFIG.format(port=port))
    argv = [DANTED, "-f", str(conf), "-p", str(directory / "danted.pid"), "-N", "1"]
    check_config([*argv, "-V"])
    with running(argv, directory, [port], "danted.log"):
        yield Dante(port, directory)


# -- the Python server ----------------------------------------------------------

ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4
SUCCEEDED, GENERAL_FAILURE, HOST_UNREACHABLE, CONNECTION_REFUSED = 0, 1, 4, 5
COMMAND_NOT_SUPPORTED = 7
NO_AUTH, USERNAME_PASSWORD, NO_ACCEPTABLE = 0, 2, 0xFF


@dataclass(frozen=True)
class SocksRequest:
    command: int  # 1 CONNECT
    atyp: int  # ATYP_IPV4, ATYP_DOMAIN or ATYP_IPV6
    host: str
    port: int
    username: bytes | None  # None: no authentication was negotiated


@dataclass(frozen=True)
class AuthAttempt:
    username: bytes
    password: bytes
    accepted: bool


class Socks5:
    """A SOCKS5 handler for ``RawServer``: ``raw(Socks5(auth=(b"u", b"p")))``.

    ``auth``: require RFC 1929 username/password (else: no authentication).
    ``reply``: answer every request with this reply code instead of connecting.
    ``upstream``: connect there whatever address was asked (the request is still
    recorded as sent), so a test does not depend on what ``localhost`` resolves to.
    """

    def __init__(
        self,
        *,
        auth: tuple[bytes, bytes] | None = None,
        reply: int | None = None,
        upstream: tuple[str, int] | None = None,
    ) -> None:
        self.auth = auth
        self.reply = reply
        self.upstream = upstream
        self.requests: queue.Queue[SocksRequest] = queue.Queue()
        self.auth_attempts: queue.Queue[AuthAttempt] = queue.Queue()

    def __call__(self, conn: RawConnection) -> None:
        sock = conn.sock
        methods = read_greeting(sock)
        wanted = NO_AUTH if self.auth is None else USERNAME_PASSWORD
        if wanted not in methods:
            sock.sendall(bytes([5, NO_ACCEPTABLE]))
            return
        sock.sendall(bytes([5, wanted]))
        username = None
        if self.auth is not None:
            username = self._authenticate(sock)
            if username is None:
                return
        request = read_request(sock, username)
        self.requests.put(request)
        if request.command != 1:
            _reply(sock, COMMAND_NOT_SUPPORTED)
            return
        if self.reply is not None:
            _reply(sock, self.reply)
            return
        target = self.upstream or (request.host, request.port)
        try:
            upstream = socket.create_connection(target, timeout=5)
        except ConnectionRefusedError:
            _reply(sock, CONNECTION_REFUSED)
            return
        except socket.gaierror:
            _reply(sock, HOST_UNREACHABLE)
            return
        except OSError:
            _reply(sock, GENERAL_FAILURE)
            return
        with upstream:
            upstream.settimeout(None)
            _reply(sock, SUCCEEDED, upstream.getsockname())
            _relay(sock, upstream, conn.server.stopping)

    def _authenticate(self, sock: socket.socket) -> bytes | None:
        version, ulen = _read(sock, 2)
        assert version == 1, f"not RFC 1929: version {version}"
        username = _read(sock, ulen)
        password = _read(sock, _read(sock, 1)[0])
        accepted = (username, password) == self.auth
        self.auth_attempts.put(AuthAttempt(username, password, accepted))
        sock.sendall(bytes([1, 0 if accepted else 1]))
        return username if accepted else None


def read_greeting(sock: socket.socket) -> bytes:
    """The client's greeting; returns the methods it offers."""
    version, n = _read(sock, 2)
    assert version == 5, f"not SOCKS5: version {version}"
    return _read(sock, n)


def read_request(sock: socket.socket, username: bytes | None = None) -> SocksRequest:
    """The client's request (after the method negotiation)."""
    version, command, _, atyp = _read(sock, 4)
    assert version == 5, f"not SOCKS5: version {version}"
    if atyp == ATYP_IPV4:
        host = str(ipaddress.IPv4Address(_read(sock, 4)))
    elif atyp == ATYP_IPV6:
        host = str(ipaddress.IPv6Address(_read(sock, 16)))
    elif atyp == ATYP_DOMAIN:
        host = _read(sock, _read(sock, 1)[0]).decode("ascii")
    else:
        raise AssertionError(f"bad ATYP {atyp}")
    (port,) = struct.unpack("!H", _read(sock, 2))
    return SocksRequest(command, atyp, host, port, username)


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise ConnectionClosedByPeer
        out += data
    return out


def _reply(sock: socket.socket, code: int, bound: tuple[str, int] = ("0.0.0.0", 0)) -> None:
    address = ipaddress.ip_address(bound[0])
    atyp = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
    sock.sendall(bytes([5, code, 0, atyp]) + address.packed + struct.pack("!H", bound[1]))


def _relay(a: socket.socket, b: socket.socket, stopping: threading.Event) -> None:
    """Copy both ways until both sides have sent EOF (or the server stops)."""
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        open_sides = 2
        while open_sides and not stopping.is_set():
            for key, _ in sel.select(0.1):
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst: socket.socket = key.data
                data = src.recv(65536)
                if data:
                    dst.sendall(data)
                    continue
                sel.unregister(src)
                open_sides -= 1
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
