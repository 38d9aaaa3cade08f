"""A WSGI app for gunicorn ``--preload``: every request calls out through one module-level Client.

Environment: ``UPSTREAM_URL`` (hypercorn's base URL) and ``MASTER_REPORT`` (a
file). At import, in the gunicorn master before it forks the workers, the
app makes one request, so the master has a running engine and a live
keep-alive connection when it forks; it writes that connection's client port
to ``MASTER_REPORT``. Each answer is JSON: the worker's pid, the upstream
status, and the client port the upstream saw (which connection was used).
``?slow=MS`` first calls the upstream's ``/slow/MS``, which keeps the worker
busy so that concurrent requests spread over the workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import httpcore

UPSTREAM = os.environ["UPSTREAM_URL"]
client = httpcore.Client(timeout=10)

_warm = client.request("GET", UPSTREAM + "/echo")
assert _warm.status_code == 200
with open(os.environ["MASTER_REPORT"], "w") as f:
    json.dump({"pid": os.getpid(), "client_port": json.loads(_warm.body)["client_port"]}, f)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = environ.get("QUERY_STRING", "")
    slow = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("slow")
    if slow is not None:
        assert client.request("GET", f"{UPSTREAM}/slow/{int(slow)}").body == b"slow"
    response = client.request("GET", UPSTREAM + "/echo?" + query)
    echoed = json.loads(response.body)
    body = json.dumps(
        {
            "pid": os.getpid(),
            "status": response.status_code,
            "client_port": echoed["client_port"],
            "query": echoed["query"],
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
