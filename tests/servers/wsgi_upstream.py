"""The upstream of ``test_wsgi.py``: hypercorn on a plain port (HTTP/1.1 and h2c).

Run as ``python -m tests.servers.wsgi_upstream FD``: serves on the listening
socket ``FD`` that the test bound (so the test knows the port and connects at
once: connections wait in the backlog until hypercorn accepts them).

Endpoints (JSON answers, each with the client port the request came in on and
its HTTP version):

  /echo                 at once
  /rendezvous/{n}?key=K when ``n`` requests with the same key are waiting here
                        at the same time, all of them (504 after 20 s). The
                        only way ``n`` calls can be answered is for ``n``
                        callers to be in flight at once: through ``n``
                        distinct sync workers, or ``n`` threads of one worker.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from urllib.parse import parse_qs


class _Group:
    def __init__(self) -> None:
        self.waiting = 0
        self.full = asyncio.Event()


_groups: dict[str, _Group] = {}


async def _rendezvous(key: str, n: int) -> bool:
    group = _groups.setdefault(key, _Group())
    group.waiting += 1
    if group.waiting >= n:
        group.full.set()
        del _groups[key]  # the next arrivals with this key form a new group
    try:
        await asyncio.wait_for(group.full.wait(), 20)
    except asyncio.TimeoutError:
        return False
    return True


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    parts = scope["path"].strip("/").split("/")
    answer: dict[str, Any] = {
        "client_port": scope["client"][1],
        "http_version": scope["http_version"],
        "path": scope["path"],
    }
    status = 200
    if parts[0] == "rendezvous":
        key = parse_qs(scope["query_string"].decode()).get("key", [""])[0]
        status = 200 if await _rendezvous(key, int(parts[1])) else 504
    elif parts[0] != "echo":
        status = 404
    body = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{int(sys.argv[1])}"]
    config.h2_max_concurrent_streams = 100
    config.keep_alive_timeout = 60
    config.keep_alive_max_requests = 1_000_000_000  # no GOAWAY after 1000 requests
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
