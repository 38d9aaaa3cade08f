"""Run the gateway.

    python -m examples.gateway --config routes.toml --port 8080 [--workers N]
        [--server uvicorn|hypercorn] [--certfile F --keyfile F] [--no-access-log]

uvicorn (with uvloop and httptools) serves HTTP/1.1; hypercorn serves HTTP/1.1
and HTTP/2 (h2c, and h2 with --certfile/--keyfile). ``--workers N`` runs N
processes under the server's own process manager, each with its own engine.
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import load
from .logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.gateway")
    parser.add_argument("--config", required=True, help="routes, as TOML")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server", choices=("uvicorn", "hypercorn"), default="uvicorn")
    parser.add_argument(
        "--client",
        choices=("httpcore", "aiohttp", "httpx"),
        default="httpcore",
        help="upstream client (aiohttp and httpx are there to be benchmarked against)",
    )
    parser.add_argument("--certfile", help="TLS certificate (hypercorn: offers h2 by ALPN)")
    parser.add_argument("--keyfile")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    load(args.config)  # fail here, not in every worker
    os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
    os.environ["GATEWAY_CLIENT"] = args.client
    os.environ["GATEWAY_ACCESS_LOG"] = "0" if args.no_access_log else "1"
    setup_logging()  # here, and again in each worker process (spawned, not forked)
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(
            "examples.gateway.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            proxy_headers=False,  # the gateway appends X-Forwarded-* itself; trust none
            server_header=False,
            date_header=False,
            log_level="warning",
            ssl_certfile=args.certfile,
            ssl_keyfile=args.keyfile,
        )
        return 0
    from hypercorn.config import Config
    from hypercorn.run import run

    config = Config()
    config.application_path = "examples.gateway.app:create_app()"
    config.bind = [f"{args.host}:{args.port}"]
    config.workers = args.workers
    config.worker_class = "uvloop"
    config.accesslog = None
    config.loglevel = "WARNING"
    # hypercorn closes a connection after 1,000 requests by default, failing
    # the HTTP/2 streams a client still has in flight on it (h2load counted
    # them as errors): a gateway's clients keep their connections.
    config.keep_alive_max_requests = 2**62
    if args.certfile:
        config.certfile, config.keyfile = args.certfile, args.keyfile
        config.alpn_protocols = ["h2", "http/1.1"]
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
