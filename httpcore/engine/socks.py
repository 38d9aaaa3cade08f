# Runs on the engine thread only. Owns nothing: it talks SOCKS5 on a socket
# that connect.py dialled and hands it back, a tunnel to the origin.
"""The SOCKS5 handshake (RFC 1928, RFC 1929), framed by ``socksio``.

It runs on the raw non-blocking socket, before any transport exists: TLS to
the origin (with ALPN) then starts on the tunnel exactly as on a direct
connection, so HTTP/2 works through SOCKS too.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from .._exceptions import ProxyError, describe
from .._models import Origin, ProxySpec

socks5: Any
try:
    import socksio
    from socksio import socks5
except ImportError:  # the optional extra `socks`
    socks5 = None

_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
_ADDRESS_LENGTH = {1: 4, 4: 16}
"""Bound address bytes after ATYP; 3 (a name) says its own length."""


async def handshake(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    proxy: ProxySpec,
    origin: Origin,
    target: str,
) -> None:
    """Ask the proxy at the other end of ``sock`` for a tunnel to ``origin``
    at ``target``: its name (``socks5h://``) or an address resolved here."""
    if socks5 is None:  # checked when the proxy was given; uninstalled since?
        raise ProxyError("SOCKS proxies need socksio: pip install 'httpcore-actor[socks]'")
    where = f"SOCKS proxy {proxy.origin}"
    conn = socks5.SOCKS5Connection()
    methods = [socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED]
    if proxy.socks_auth is not None:
        methods = [socks5.SOCKS5AuthMethod.USERNAME_PASSWORD]
    conn.send(socks5.SOCKS5AuthMethodsRequest(methods))
    reader = _Reader(loop, sock, where)
    try:
        await loop.sock_sendall(sock, conn.data_to_send())
        auth = conn.receive_data(await reader.exactly(2))
        if auth.method not in methods:
            offered = "username/password" if proxy.socks_auth else "no authentication"
            raise ProxyError(f"{where} refused the authentication offered ({offered})")
        if auth.method == socks5.SOCKS5AuthMethod.USERNAME_PASSWORD:
            assert proxy.socks_auth is not None
            conn.send(socks5.SOCKS5UsernamePasswordRequest(*proxy.socks_auth))
            await loop.sock_sendall(sock, conn.data_to_send())
            if not conn.receive_data(await reader.exactly(2)).success:
                raise ProxyError(f"{where} refused the username or password")
        command = socks5.SOCKS5CommandRequest.from_address(
            socks5.SOCKS5Command.CONNECT, (target, origin.port)
        )
        conn.send(command)
        await loop.sock_sendall(sock, conn.data_to_send())
        head = await reader.exactly(4)
        if head[1] != 0:
            reason = _REPLIES.get(head[1], f"reply code {head[1]}")
            raise ProxyError(f"{where} could not connect to {origin}: {reason}")
        atyp = head[3]
        if atyp == 3:
            length = (await reader.exactly(1))[0]
            rest = bytes([length]) + await reader.exactly(length + 2)
        elif atyp in _ADDRESS_LENGTH:
            rest = await reader.exactly(_ADDRESS_LENGTH[atyp] + 2)
        else:
            raise ProxyError(f"{where} sent a reply with unknown address type {atyp}")
        conn.receive_data(head + rest)
        if reader.pending:
            raise ProxyError(f"{where} sent data before the tunnel was used")
    except socksio.ProtocolError as exc:
        raise ProxyError(f"{where} sent a malformed reply: {exc}") from exc
    except OSError as exc:
        raise ProxyError(f"{where} failed during the handshake: {describe(exc)}") from exc


class _Reader:
    __slots__ = ("_buffer", "_loop", "_sock", "_where")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, where: str) -> None:
        self._loop = loop
        self._sock = sock
        self._where = where
        self._buffer = b""

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    async def exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data = await self._loop.sock_recv(self._sock, 4096)
            if not data:
                raise ProxyError(f"{self._where} closed the connection during the handshake")
            self._buffer += data
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out
