"""Small helpers shared by the HTTP/2 tests."""

from __future__ import annotations

import time
from collections.abc import Callable
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
