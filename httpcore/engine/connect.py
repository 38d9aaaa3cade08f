# Runs on the engine thread only. Owns nothing: it opens a socket (TCP, then
# TLS with SNI and ALPN) and hands the resulting Transport to its caller.
"""Opening connections: TCP, TLS, ALPN, with connect timeouts and retries."""

from __future__ import annotations

import asyncio
import random
import ssl

from .._config import Timeout
from .._exceptions import ConnectError, ConnectTimeout, describe
from .._models import Origin
from .transport import Transport

BACKOFF_FACTOR = 0.25
BACKOFF_MAX = 5.0


async def _open_once(
    loop: asyncio.AbstractEventLoop,
    origin: Origin,
    ssl_context: ssl.SSLContext | None,
    timeout: Timeout,
) -> Transport:
    host = origin.host.decode("ascii")
    if "%" in host:
        host = host.split("%", 1)[0]
    tls = ssl_context if origin.scheme == b"https" else None
    coro = loop.create_connection(
        Transport,
        host,
        origin.port,
        ssl=tls,
        server_hostname=host if tls is not None else None,
        ssl_handshake_timeout=timeout.connect if tls is not None and timeout.connect else None,
    )
    try:
        _, protocol = await asyncio.wait_for(coro, timeout.connect)
    except asyncio.TimeoutError:
        raise ConnectTimeout(f"timed out connecting to {origin}") from None
    except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
        raise ConnectError(f"cannot connect to {origin}: {describe(exc)}") from exc
    return protocol


async def open_transport(
    origin: Origin,
    ssl_context: ssl.SSLContext | None,
    timeout: Timeout,
    retries: int,
) -> Transport:
    """Connect, retrying ``retries`` times on ConnectError/ConnectTimeout with backoff."""
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        try:
            return await _open_once(loop, origin, ssl_context, timeout)
        except (ConnectError, ConnectTimeout):
            if attempt >= retries:
                raise
        delay = min(BACKOFF_MAX, BACKOFF_FACTOR * (2**attempt)) * (0.5 + random.random() / 2)
        attempt += 1
        await asyncio.sleep(delay)
