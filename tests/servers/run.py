"""Run ``app.py`` under hypercorn: ``python -m tests.servers.run PORT TLS_PORT CERT KEY``.

Plain HTTP on PORT and HTTPS on TLS_PORT, both on 127.0.0.1, HTTP/1.1 only:
ALPN offers only ``http/1.1`` (so TLS clients cannot pick h2). Hypercorn still
accepts h2c (prior knowledge or ``Upgrade: h2c``) on the plain port, which an
HTTP/1.1-only client never sends.
"""

from __future__ import annotations

import asyncio
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.servers.app import app


def main() -> None:
    port, tls_port, certfile, keyfile = sys.argv[1:5]
    config = Config()
    config.bind = [f"127.0.0.1:{tls_port}"]
    config.insecure_bind = [f"127.0.0.1:{port}"]
    config.certfile = certfile
    config.keyfile = keyfile
    config.alpn_protocols = ["http/1.1"]
    config.h11_pass_raw_headers = True
    config.keep_alive_timeout = 30
    config.keep_alive_max_requests = 100_000
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
