"""Small helpers shared by the HTTP/2 tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpcore

T = TypeVar("T")


def poll_until(probe: Callable[[], T], timeout: float = 5.0) -> T:
    """Call ``probe`` until it returns something truthy (then return it), or fail.

    For state the engine reaches asynchronously (a connection closing after
    the response was handed over): a condition checked with a deadline, not
    a sleep standing in for synchronisation.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s: last value {value!r}")
        time.sleep(0.01)


def h2c_client(**kwargs: object) -> httpcore.Client:
    """A Client speaking HTTP/2 with prior knowledge on ``http://``."""
    return httpcore.Client(http1=False, http2=True, **kwargs)  # type: ignore[arg-type]


def h2c_pool(**kwargs: object) -> httpcore.PoolManager:
    return httpcore.PoolManager(http1=False, http2=True, **kwargs)  # type: ignore[arg-type]


def live(infos: list[httpcore.ConnectionInfo]) -> list[httpcore.ConnectionInfo]:
    return [i for i in infos if i.state != "closed"]


def get_from_threads(
    client: httpcore.Client, url: Callable[[int, int], str], threads: int, per_thread: int
) -> list[tuple[int, str, bytes]]:
    """``threads`` threads that start together on ``client`` (a cold pool), each
    sending ``per_thread`` GETs one after the other (``url(thread, j)``):
    ``(status_code, http_version, body)`` of every response."""
    barrier = threading.Barrier(threads)

    def work(i: int) -> list[tuple[int, str, bytes]]:
        barrier.wait()  # all threads hit the cold pool together
        out = []
        for j in range(per_thread):
            r = client.request("GET", url(i, j))
            out.append((r.status_code, r.http_version, r.body))
        return out

    with ThreadPoolExecutor(threads) as executor:
        return [r for rs in executor.map(work, range(threads)) for r in rs]
