"""Run ``app.py`` under hypercorn: ``python -m tests.servers.run PORT TLS_PORT CERT KEY [h2]``.

Plain HTTP on PORT and HTTPS on TLS_PORT, both on 127.0.0.1.

Without ``h2``: HTTP/1.1 only; ALPN offers only ``http/1.1`` (hypercorn still
accepts h2c on the plain port, which an HTTP/1.1-only client never sends).

With ``h2``: ALPN offers ``h2`` and ``http/1.1``, the plain port speaks h2c
with prior knowledge too, 100 concurrent streams per connection.
``keep_alive_max_requests`` is very high: hypercorn's default (1000) sends
GOAWAY after that many requests and then, racily, leaves streams already in
flight unanswered, which would make tests flaky for reasons not the client's.
"""

from __future__ import annotations

import asyncio
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.servers.app import app

MAX_STREAMS = 100


def main() -> None:
    port, tls_port, certfile, keyfile = sys.argv[1:5]
    h2 = sys.argv[5:6] == ["h2"]
    config = Config()
    config.bind = [f"127.0.0.1:{tls_port}"]
    config.insecure_bind = [f"127.0.0.1:{port}"]
    config.certfile = certfile
    config.keyfile = keyfile
    config.alpn_protocols = ["h2", "http/1.1"] if h2 else ["http/1.1"]
    config.h11_pass_raw_headers = True
    config.h2_max_concurrent_streams = MAX_STREAMS
    config.keep_alive_timeout = 60
    config.keep_alive_max_requests = 1_000_000_000
    config.backlog = 1024
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
