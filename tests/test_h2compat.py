"""``engine/h2compat.py``: every patch of h2/hpack/hyperframe holds on the
installed versions (CI runs this file on the lowest and the highest h2 that
pyproject allows), and with every patch left out the driver still works on
stock h2 behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h2

from httpcore.engine import h2compat
from tests.conftest import ROOT
from tests.servers.handles import HTTPServer

_CLIENT = """
import json, sys, httpcore
from concurrent.futures import ThreadPoolExecutor
from httpcore.engine import h2compat
url = sys.argv[1]
with httpcore.Client(http1=False, http2=True, timeout=10) as client:
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda i: client.request("GET", url).status_code, range(40)))
    conns = [(c.http_version, c.requests_served) for c in client.connections()]
print(json.dumps({"patches": h2compat.PATCHES, "statuses": bodies, "conns": conns}))
"""


def test_every_patch_holds_on_this_h2() -> None:
    """A patch whose check fails is silently left out: on the versions we
    support, none may be (else the driver loses a fix without anyone noticing)."""
    assert h2compat.PATCHES == dict.fromkeys(
        ["repr", "hpack_cache", "goaway", "stream_walk", "events_before_error",
         "stream_errors", "idle_reset", "fast_data", "fast_headers"],
        True,
    ), (h2.__version__, h2compat.PATCHES)


def _run_client(url: str, stock: str) -> dict[str, object]:
    env = dict(os.environ, HTTPCORE_H2_STOCK=stock, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", _CLIENT, url],
        capture_output=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_stock_h2_fallback_still_serves(h2_server: HTTPServer) -> None:
    """With every patch left out (what happens when a new h2 breaks all the
    checks), 40 requests from 8 threads are still multiplexed on one
    connection and all succeed."""
    result = _run_client(f"http://127.0.0.1:{h2_server.port}/echo", "all")
    assert not any(dict(result["patches"]).values())  # type: ignore[call-overload]
    assert result["statuses"] == [200] * 40
    assert result["conns"] == [["HTTP/2", 40]]
