"""Soak: many mixed requests, then check that nothing leaked.

CI runs a short form (``HTTPCORE_SOAK_REQUESTS``, default 20,000). The full
form from issue 4 (200,000 requests) is one command:

    cd /work/main && HTTPCORE_SOAK_REQUESTS=200000 \
        .venv/bin/python -m pytest -q -s tests/test_soak.py

(the test's pytest-timeout scales with the request count). ``-s`` shows the
summary line::

    SOAK requests=... ok=... errors={...} cancelled=...
         fds before=... after=... rss_mb before=... after=...

Traffic, half from sync threads sharing one ``Client``, half from async
tasks sharing one ``PoolManager`` on an event loop in another thread:

* HTTP/1.1 to hypercorn (plain) and HTTP/2 to hypercorn (TLS, ALPN h2),
  with bodies checked byte for byte;
* uploads on both;
* streams closed unread, short timeouts against a slow endpoint, and (async)
  tasks cancelled mid-request;
* a server in another process (``servers/fuzzdrop.py``) that truncates
  bodies, resets connections and closes idle keep-alive connections.

Five origins (each hypercorn as ``127.0.0.1`` and as ``localhost``, and the
drop server) share pools of ``MAX_CONNECTIONS`` = 4: connections are evicted
across origins all the time, HTTP/1.1 and HTTP/2 alike.

Every request must either succeed or raise an ``httpcore.HTTPCoreError``
(async cancellations are counted separately). Afterwards the open file
descriptors of this process must be back within a few of the count after
the warm-up, and RSS within 30 MB.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import gc
import os
import random
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

import httpcore
from tests.conftest import free_port, stop_process, wait_listening
from tests.servers.app import pattern
from tests.servers.handles import HTTPServer

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = int(os.environ.get("HTTPCORE_SOAK_REQUESTS", "20000"))
WARMUP = 5000
SYNC_THREADS = 8
ASYNC_TASKS = 32
FD_MARGIN = 8
MAX_CONNECTIONS = 4
RSS_MARGIN = 30 * 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    """Resident set size, after a full collection and handing free heap back to the OS
    (glibc's per-thread arenas otherwise keep freed pages: that is not a leak)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


@pytest.fixture(scope="module")
def drop_server() -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.fuzzdrop", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    wrong_version: list[str] = field(default_factory=list)

    def add(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            self.by_kind[f"{kind}:{outcome}"] += 1

    def add_error(self, kind: str, url: str, exc: BaseException) -> None:
        """An ``HTTPCoreError`` counts under its class name; anything else is UNEXPECTED."""
        if isinstance(exc, httpcore.HTTPCoreError):
            self.add(kind, type(exc).__name__)
            return
        self.add(kind, "UNEXPECTED")
        with self.lock:
            self.unexpected.append(f"{kind} {url}: {exc!r}")


@dataclass(frozen=True)
class Targets:
    h1: tuple[str, ...]
    h2: tuple[str, ...]
    drop: str


KINDS = (
    # (name, cumulative probability)
    ("h1_get", 0.28),
    ("h2_get", 0.56),
    ("upload", 0.64),
    ("stream_close", 0.72),
    ("short_timeout", 0.78),
    ("drop", 0.93),
    ("drop_always", 0.96),
    ("cancel", 1.0),  # async: task cancelled; sync: stream abandoned mid-body
)


def pick(rng: random.Random) -> str:
    r = rng.random()
    for name, p in KINDS:
        if r < p:
            return name
    return KINDS[-1][0]


def plan(rng: random.Random, kind: str, t: Targets) -> tuple[str, str, bytes | None, float | None]:
    """method, url, body, timeout for one request of ``kind``."""
    h1, h2 = rng.choice(t.h1), rng.choice(t.h2)
    base = h1 if rng.random() < 0.5 else h2
    if kind == "h1_get":
        return "GET", f"{h1}/bytes/{rng.randrange(0, 5000)}", None, None
    if kind == "h2_get":
        return "GET", f"{h2}/bytes/{rng.randrange(0, 5000)}", None, None
    if kind == "upload":
        return "POST", f"{base}/upload", os.urandom(rng.randrange(1, 20000)), None
    if kind == "stream_close":
        return "GET", f"{base}/bytes/{rng.choice((100_000, 1_000_000))}", None, None
    if kind == "short_timeout":
        return "GET", f"{base}/slow/300", None, rng.choice((0.005, 0.02, 0.05))
    if kind == "drop":
        return "GET", f"{t.drop}/x", None, None
    if kind == "drop_always":
        return "GET", f"{t.drop}/drop", None, None
    return "GET", f"{base}/slow/{rng.randrange(1, 30)}", None, None


def check(
    tally: Tally, kind: str, url: str, status: int, version: str, body: bytes, sent: bytes | None
) -> None:
    if kind in ("h1_get", "h2_get"):
        n = int(url.rsplit("/", 1)[1])
        if status != 200 or body != pattern(n):
            tally.corrupt.append(f"{url}: {status} {len(body)} bytes")
        want = "HTTP/1.1" if kind == "h1_get" else "HTTP/2"
        if version != want:
            tally.wrong_version.append(f"{url}: {version}")
    elif kind == "upload" and sent is not None:
        import hashlib
        import json

        got = json.loads(body)
        if got["length"] != len(sent) or got["sha256"] != hashlib.sha256(sent).hexdigest():
            tally.corrupt.append(f"{url}: upload echoed {got}")
    elif kind in ("drop", "drop_always"):
        if status != 200 or body != b"d" * 1000:
            tally.corrupt.append(f"{url}: {status} {body[:40]!r}")


def sync_worker(client: httpcore.Client, t: Targets, n: int, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        kind = pick(rng)
        method, url, body, timeout = plan(rng, kind, t)
        try:
            if kind in ("stream_close", "cancel"):
                with client.request(method, url, stream=True, timeout=timeout) as resp:
                    if kind == "stream_close":
                        for _part in resp.stream():
                            break  # leave with most of the body unread
                tally.add(kind, "ok")
                continue
            resp = client.request(method, url, body=body, timeout=timeout)
            check(tally, kind, url, resp.status_code, resp.http_version, resp.body, body)
            tally.add(kind, "ok")
        except BaseException as exc:
            tally.add_error(kind, url, exc)


async def async_worker(
    pool: httpcore.PoolManager, t: Targets, n: int, seed: int, tally: Tally
) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        kind = pick(rng)
        method, url, body, timeout = plan(rng, kind, t)
        try:
            if kind == "cancel":
                task = asyncio.ensure_future(pool.request(method, url, timeout=timeout))
                for _ in range(rng.randrange(0, 4)):
                    await asyncio.sleep(0)
                if rng.random() < 0.5:
                    await asyncio.sleep(rng.random() * 0.01)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    tally.add(kind, "cancelled")
                    continue
                tally.add(kind, "ok")
                continue
            if kind == "stream_close":
                async with await pool.request(method, url, stream=True, timeout=timeout) as resp:
                    async for _part in resp.stream():
                        break
                tally.add(kind, "ok")
                continue
            resp = await pool.request(method, url, body=body, timeout=timeout)
            check(tally, kind, url, resp.status_code, resp.http_version, resp.body, body)
            tally.add(kind, "ok")
        except BaseException as exc:
            tally.add_error(kind, url, exc)


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def wait_quiet(connections: list[httpcore.ConnectionInfo], query: object, deadline: float) -> None:
    """Poll ``query()`` until no connection is active or connecting."""
    assert callable(query)
    while time.monotonic() < deadline:
        infos = query()
        if all(i.state in ("idle", "closed") and i.active_streams == 0 for i in infos):
            return
        time.sleep(0.05)  # polling with a deadline, not a synchronisation point
    raise AssertionError(f"connections still busy: {query()}")


def run_mix(
    tls_ca: trustme.CA, t: Targets, total: int, tally: Tally, seed: int
) -> tuple[list[httpcore.ConnectionInfo], list[httpcore.ConnectionInfo]]:
    """Run ``total`` requests (half sync, half async); close both clients at the end."""
    sync_n = total // 2
    async_n = total - sync_n
    limits = httpcore.Limits(max_connections=MAX_CONNECTIONS)
    client = httpcore.Client(ssl=client_context(tls_ca), timeout=10.0, limits=limits)
    threads = [
        threading.Thread(
            target=sync_worker,
            args=(client, t, sync_n // SYNC_THREADS + (i < sync_n % SYNC_THREADS), seed + i, tally),
            name=f"soak-sync-{i}",
        )
        for i in range(SYNC_THREADS)
    ]
    async_infos: list[httpcore.ConnectionInfo] = []

    async def amain() -> None:
        pool = httpcore.PoolManager(ssl=client_context(tls_ca), timeout=10.0, limits=limits)
        per = [async_n // ASYNC_TASKS + (i < async_n % ASYNC_TASKS) for i in range(ASYNC_TASKS)]
        await asyncio.gather(
            *(async_worker(pool, t, per[i], seed + 1000 + i, tally) for i in range(ASYNC_TASKS))
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            infos = await pool.aconnections()
            if all(i.state in ("idle", "closed") and i.active_streams == 0 for i in infos):
                break
            await asyncio.sleep(0.05)  # polling with a deadline
        async_infos.extend(await pool.aconnections())
        await pool.aclose()

    loop_errors: list[BaseException] = []

    def async_thread() -> None:
        try:
            asyncio.run(amain())
        except BaseException as exc:
            loop_errors.append(exc)

    athread = threading.Thread(target=async_thread, name="soak-async")
    athread.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    athread.join()
    assert not loop_errors, loop_errors
    wait_quiet([], client.connections, time.monotonic() + 20)
    sync_infos = client.connections()
    client.close()
    return sync_infos, async_infos


@pytest.mark.slow
@pytest.mark.timeout(180 + REQUESTS // 100)
def test_soak(
    http_server: HTTPServer, h2_server: HTTPServer, drop_server: str, tls_ca: trustme.CA
) -> None:
    t = Targets(
        h1=(http_server.base_url, http_server.base_url.replace("127.0.0.1", "localhost")),
        h2=(h2_server.https_base_url, h2_server.https_base_url.replace("127.0.0.1", "localhost")),
        drop=drop_server,
    )

    # Warm-up: the engine thread, TLS state, imports, allocator arenas.
    warm = Tally()
    run_mix(tls_ca, t, WARMUP, warm, seed=1)
    assert not warm.unexpected, warm.unexpected[:10]

    def settled_fds(target: int | None, deadline: float) -> int:
        n = open_fds()
        while time.monotonic() < deadline and (target is None or n > target):
            time.sleep(0.05)  # the engine closes sockets asynchronously; poll with a deadline
            n = open_fds()
        return n

    fds_before = settled_fds(None, 0)
    # let the closes of the warm-up finish (count stops falling)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)  # polling
        n = open_fds()
        if n >= fds_before:
            break
        fds_before = n
    rss_before = rss()

    tally = Tally()
    started = time.monotonic()
    sync_infos, async_infos = run_mix(tls_ca, t, REQUESTS, tally, seed=12345)
    elapsed = time.monotonic() - started

    fds_after = settled_fds(fds_before + FD_MARGIN, time.monotonic() + 20)
    rss_after = rss()

    total = sum(tally.outcomes.values())
    errors = {k: v for k, v in sorted(tally.outcomes.items()) if k not in ("ok", "cancelled")}
    summary = (
        f"SOAK requests={total} in {elapsed:.1f}s ok={tally.outcomes['ok']} errors={errors} "
        f"cancelled={tally.outcomes['cancelled']} fds before={fds_before} after={fds_after} "
        f"rss_mb before={rss_before / 2**20:.1f} after={rss_after / 2**20:.1f}"
    )
    print()
    print(summary)
    print("SOAK by kind:", dict(sorted(tally.by_kind.items())))

    assert total == REQUESTS
    assert not tally.unexpected, tally.unexpected[:20]
    assert not tally.corrupt, tally.corrupt[:20]
    assert not tally.wrong_version, tally.wrong_version[:20]
    for infos in (sync_infos, async_infos):
        assert all(i.active_streams == 0 and i.state != "connecting" for i in infos), infos
        assert len(infos) <= MAX_CONNECTIONS, infos
    # The plain fetches must overwhelmingly succeed; drops were the drop server's.
    for kind in ("h1_get", "h2_get", "upload"):
        ok = tally.by_kind[f"{kind}:ok"]
        failed = sum(v for k, v in tally.by_kind.items() if k.startswith(kind + ":")) - ok
        assert ok > 0 and failed <= max(5, ok // 200), (kind, summary)
    assert tally.by_kind["drop_always:ok"] == 0, summary
    assert fds_after <= fds_before + FD_MARGIN, summary
    assert rss_after <= rss_before + RSS_MARGIN, summary
