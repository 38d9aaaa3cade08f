"""Run ``app.py`` under hypercorn with HTTP/2.

``python -m tests.servers.h2run PORT TLS_PORT CERT KEY``: TLS on TLS_PORT
offers ALPN ``h2`` and ``http/1.1`` (the client picks by what it offers);
PORT is plain HTTP where hypercorn speaks h2c with prior knowledge as well as
HTTP/1.1. The server allows 100 concurrent streams per connection.

``keep_alive_max_requests`` is set very high: hypercorn's default (1000) makes
it send GOAWAY after that many requests on a connection and then, racily, not
answer streams already in flight, which would make the multiplexing tests flaky
for reasons that are not the client's.
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
    config = Config()
    config.bind = [f"127.0.0.1:{tls_port}"]
    config.insecure_bind = [f"127.0.0.1:{port}"]
    config.certfile = certfile
    config.keyfile = keyfile
    config.alpn_protocols = ["h2", "http/1.1"]
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
