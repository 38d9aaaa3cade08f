"""Make requests, close nothing, exit.

``python -m tests.scripts.exit_unclosed HTTP_URL HTTPS_URL CA_FILE``

Before importing httpcore it registers an atexit hook, which therefore runs
*after* httpcore's own: it prints ``holding`` and waits for one line on stdin.
While the process sits there, the test checks that the servers already saw
their connections closed, so the close was the engine's doing, not the
kernel's at process exit.
"""

from __future__ import annotations

import atexit
import sys


def _hold() -> None:
    sys.stdout.write("holding\n")
    sys.stdout.flush()
    sys.stdin.readline()


atexit.register(_hold)

import asyncio  # noqa: E402
import ssl  # noqa: E402

import httpcore  # noqa: E402

http_url, https_url, ca_file = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=ca_file)

client = httpcore.Client(ssl=ctx, timeout=10)
assert client.request("GET", http_url + "sync").body == b"ok"
assert client.request("GET", https_url + "sync").body == b"ok"


async def main() -> None:
    pool = httpcore.PoolManager(ssl=ctx, timeout=10)
    assert (await pool.request("GET", http_url + "async")).body == b"ok"
    assert (await pool.request("GET", https_url + "async")).body == b"ok"


asyncio.run(main())
print("done", flush=True)
