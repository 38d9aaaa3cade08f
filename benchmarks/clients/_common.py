"""Shared timing loops for the benchmark clients (stdlib only).

Every client script measures one library in one mode and prints a single JSON
line on stdout: {"lib", "version", "mode", "rate", "unit", "count", "elapsed",
"errors", ...}.  Timing starts after a warm-up (connections open), so interpreter
start-up and imports are not measured.

Modes:
  seq       one thread, sequential GETs              -> req/s
  threads   N threads sharing one client             -> req/s
  async     N asyncio tasks sharing one session      -> req/s
  download  streamed downloads of a big body         -> MiB/s
  downloads N threads sharing one client, each streaming downloads one after
            another                                  -> MiB/s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

SMALL_BODY = b"hello world\n"
MAX_ERRORS = 200


class Args(argparse.Namespace):
    mode: str
    url: str
    duration: float
    warmup: float
    concurrency: int
    cafile: str | None
    http2: bool
    expect_bytes: int | None


def parse_args(modes: list[str]) -> Args:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=modes)
    p.add_argument("--url", required=True)
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds")
    p.add_argument("--concurrency", type=int, default=1, help="threads or tasks")
    p.add_argument("--cafile", help="CA bundle for https:// URLs")
    p.add_argument("--http2", action="store_true", help="use HTTP/2 where the library can")
    p.add_argument("--expect-bytes", type=int, help="body size to check in download mode")
    return p.parse_args(namespace=Args())


def ssl_context(args: Args) -> ssl.SSLContext | None:
    if not args.url.startswith("https:"):
        return None
    ctx = ssl.create_default_context(cafile=args.cafile)
    return ctx


class Errors:
    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None
        self._lock = threading.Lock()

    def add(self, exc: BaseException) -> None:
        with self._lock:
            self.count += 1
            if self.first is None:
                self.first = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
            if self.count >= MAX_ERRORS:
                raise SystemExit(f"too many errors, first: {self.first}")


def check_small(status: int, body: bytes) -> None:
    if status != 200 or body != SMALL_BODY:
        raise RuntimeError(f"unexpected response: {status} {body[:40]!r}")


def run_seq(fn: Callable[[], None], args: Args) -> tuple[int, float, Errors]:
    errors = Errors()
    fn()  # first request must work: a failure here is fatal
    end = time.perf_counter() + args.warmup
    while time.perf_counter() < end:
        fn()
    count = 0
    t0 = time.perf_counter()
    deadline = t0 + args.duration
    now = t0
    while now < deadline:
        try:
            fn()
            count += 1
        except Exception as exc:
            errors.add(exc)
        now = time.perf_counter()
    return count, now - t0, errors


def run_threads(fn: Callable[[], None], args: Args) -> tuple[int, float, Errors]:
    """N threads each run fn (one request) in a loop; returns (requests, elapsed)."""

    def step() -> int:
        fn()
        return 1

    return _run_workers(step, args)


def _run_workers(step: Callable[[], int], args: Args) -> tuple[int, float, Errors]:
    """N threads: each warms up, waits for the others, then runs ``step`` in a
    loop until the deadline; returns (sum of what the steps returned, elapsed)."""
    n = args.concurrency
    errors = Errors()
    counts = [0] * n
    ready = threading.Barrier(n + 1)
    go = threading.Barrier(n + 1)
    box: dict[str, float] = {}

    def worker(i: int) -> None:
        try:
            step()
            end = time.perf_counter() + args.warmup
            while time.perf_counter() < end:
                step()
        except Exception as exc:
            errors.add(exc)
        ready.wait()
        go.wait()
        deadline = box["deadline"]
        c = 0
        while time.perf_counter() < deadline:
            try:
                c += step()
            except Exception as exc:
                errors.add(exc)
        counts[i] = c

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    box["deadline"] = t0 + args.duration
    go.wait()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - t0, errors


async def run_tasks(fn: Callable[[], Awaitable[None]], args: Args) -> tuple[int, float, Errors]:
    n = args.concurrency
    errors = Errors()

    async def warm() -> None:
        try:
            await fn()
            end = time.perf_counter() + args.warmup
            while time.perf_counter() < end:
                await fn()
        except Exception as exc:
            errors.add(exc)

    await asyncio.gather(*(warm() for _ in range(n)))
    t0 = time.perf_counter()
    deadline = t0 + args.duration

    async def work() -> int:
        c = 0
        while time.perf_counter() < deadline:
            try:
                await fn()
                c += 1
            except Exception as exc:
                errors.add(exc)
        return c

    counts = await asyncio.gather(*(work() for _ in range(n)))
    return sum(counts), time.perf_counter() - t0, errors


def run_download(fn: Callable[[], int], args: Args) -> tuple[int, float, Errors]:
    """fn downloads the whole body and returns its size; returns (bytes, elapsed)."""
    errors = Errors()
    expect = args.expect_bytes

    def one() -> int:
        n = fn()
        if expect is not None and n != expect:
            raise RuntimeError(f"downloaded {n} bytes, expected {expect}")
        return n

    if args.warmup > 0:
        one()
    total = 0
    t0 = time.perf_counter()
    now = t0
    while True:
        try:
            total += one()
        except Exception as exc:
            errors.add(exc)
        now = time.perf_counter()
        if now - t0 >= args.duration:
            break
    return total, now - t0, errors


def run_downloads(fn: Callable[[], int], args: Args) -> tuple[int, float, Errors]:
    """N threads each run fn (a whole download, returning its size) in a loop, as
    run_threads does with requests; returns (bytes, elapsed). A download of the
    wrong size is an error, and its bytes are not counted."""
    expect = args.expect_bytes

    def step() -> int:
        size = fn()
        if expect is not None and size != expect:
            raise RuntimeError(f"downloaded {size} bytes, expected {expect}")
        return size

    return _run_workers(step, args)


def emit(
    lib: str,
    version: str,
    args: Args,
    result: tuple[int, float, Errors],
    **extra: Any,
) -> None:
    count, elapsed, errors = result
    if args.mode in ("download", "downloads"):
        rate = count / elapsed / 2**20
        unit = "MiB/s"
    else:
        rate = count / elapsed
        unit = "req/s"
    line = {
        "lib": lib,
        "version": version,
        "mode": args.mode,
        "rate": rate,
        "unit": unit,
        "count": count,
        "elapsed": elapsed,
        "errors": errors.count,
        "first_error": errors.first,
        "concurrency": args.concurrency,
        **extra,
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
