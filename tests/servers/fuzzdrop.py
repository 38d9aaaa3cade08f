"""A keep-alive HTTP/1.1 server that drops connections: ``python -m tests.servers.fuzzdrop PORT``.

Runs in its own process (asyncio, one task per connection) so that the soak
test's fd and RSS figures are the client's alone. Every request gets
``200`` with a 1,000-byte body and Content-Length, except:

* every ``DROP_EVERY``-th connection: the first response stops after the head
  and half the body, then the connection is closed (FIN) -- the client sees a
  truncated body;
* every ``RESET_EVERY``-th connection: the first request is read and the
  connection is aborted (RST) without an answer;
* every other connection serves at most ``MAX_PER_CONN`` requests and then
  closes while idle, so the client meets stale keep-alive connections.

Paths ending in ``/drop`` are always answered with a truncated body.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

DROP_EVERY = 5
RESET_EVERY = 7
MAX_PER_CONN = 20
BODY = b"d" * 1000
HALF = len(BODY) // 2
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n" % len(BODY)

_counter = itertools.count()


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        try:
            await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
    return head.split(b"\r\n", 1)[0]


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    index = next(_counter)
    try:
        for served in range(MAX_PER_CONN):
            line = await _read_request(reader)
            if line is None:
                return
            path = line.split(b" ")[1] if line.count(b" ") >= 2 else b"/"
            if served == 0 and index % RESET_EVERY == 0:
                writer.transport.abort()
                return
            if (served == 0 and index % DROP_EVERY == 0) or path.endswith(b"/drop"):
                writer.write(HEAD + BODY[:HALF])
                await writer.drain()
                return
            writer.write(HEAD + BODY)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
