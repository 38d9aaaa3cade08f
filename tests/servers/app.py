"""A small ASGI app served by hypercorn in a subprocess (see ``run.py``).

Endpoints:
  /echo            JSON: method, path, query, headers (as received), body length and sha256,
                   client port (tells whether a connection was reused), http_version
  /bytes/{n}       n bytes of ``pattern(n)`` with Content-Length
  /chunked/{n}     n bytes of ``pattern(n)`` in ``?size=k`` pieces, no Content-Length (chunked)
  /status/{code}   that status, no body for 1xx/204/304, else b"status {code}"
  /slow/{ms}       answers b"slow" after ms milliseconds
  /head-test       b"hello head" with Content-Length; HEAD gets the same head and no body
  /upload          reads the request body piece by piece, returns JSON length + sha256
  /close           answers with ``Connection: close``
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

_PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern(n: int) -> bytes:
    """The deterministic body of /bytes/{n} and /chunked/{n}."""
    reps, rest = divmod(n, len(_PATTERN))
    return _PATTERN * reps + _PATTERN[:rest]


async def _read_body(receive: Any) -> tuple[int, str]:
    digest = hashlib.sha256()
    length = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        length += len(chunk)
        digest.update(chunk)
        if not message.get("more_body", False):
            break
    return length, digest.hexdigest()


async def _respond(
    send: Any,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_length: bool = True,
) -> None:
    head = list(headers or [])
    if content_length:
        head.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    path: str = scope["path"]
    method: str = scope["method"]
    query = parse_qs(scope["query_string"].decode())
    parts = path.strip("/").split("/")

    if parts[0] == "echo":
        length, sha = await _read_body(receive)
        payload = {
            "method": method,
            "path": path,
            "query": scope["query_string"].decode(),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body_length": length,
            "body_sha256": sha,
            "client_port": scope["client"][1],
            "http_version": scope["http_version"],
        }
        body = json.dumps(payload).encode()
        await _respond(send, 200, body, [(b"content-type", b"application/json")])
    elif parts[0] == "upload":
        length, sha = await _read_body(receive)
        body = json.dumps({"length": length, "sha256": sha}).encode()
        await _respond(send, 200, body, [(b"content-type", b"application/json")])
    elif parts[0] == "bytes":
        await _read_body(receive)
        n = int(parts[1])
        data = pattern(n)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(n).encode())],
            }
        )
        step = 256 * 1024
        for start in range(0, max(n, 1), step):
            piece = data[start : start + step]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif parts[0] == "chunked":
        await _read_body(receive)
        n = int(parts[1])
        size = int(query.get("size", ["1024"])[0])
        data = pattern(n)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for start in range(0, n, size):
            piece = data[start : start + size]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif parts[0] == "status":
        await _read_body(receive)
        code = int(parts[1])
        if code in (204, 304) or code < 200:
            await send({"type": "http.response.start", "status": code, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _respond(send, code, f"status {code}".encode())
    elif parts[0] == "slow":
        await _read_body(receive)
        await asyncio.sleep(int(parts[1]) / 1000)
        await _respond(send, 200, b"slow")
    elif parts[0] == "head-test":
        await _read_body(receive)
        body = b"hello head"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
    elif parts[0] == "close":
        await _read_body(receive)
        await _respond(send, 200, b"closing", [(b"connection", b"close")])
    else:
        await _read_body(receive)
        await _respond(send, 404, b"not found")
