"""Frozen, shareable policy values: timeouts, limits, proxy, SSL defaults."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, TypeAlias

import certifi

__all__ = [
    "DEFAULT_TIMEOUT",
    "NO_TIMEOUT",
    "UNSET",
    "Limits",
    "Proxy",
    "Timeout",
    "TimeoutTypes",
    "default_ssl_context",
]


class _Unset:
    """The default of a request's ``timeout``: use the pool's."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Typed as Any so that it is a valid default for every argument type."""


def _seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    seconds = float(value)
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"{name}={value!r}: must be >= 0, or None for no limit")
    return seconds


@dataclass(frozen=True, slots=True, init=False)
class Timeout:
    """Seconds per phase; ``None`` in a phase means no limit.

    ``Timeout(5.0)`` sets every phase; keywords override single phases.
    """

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None

    def __init__(
        self,
        timeout: float | None = UNSET,
        *,
        connect: float | None = UNSET,
        read: float | None = UNSET,
        write: float | None = UNSET,
        pool: float | None = UNSET,
    ) -> None:
        base = 5.0 if timeout is UNSET else _seconds("timeout", timeout)
        for name, value in (("connect", connect), ("read", read), ("write", write), ("pool", pool)):
            chosen = base if value is UNSET else _seconds(f"timeout {name}", value)
            object.__setattr__(self, name, chosen)

    @property
    def longest(self) -> float | None:
        """The longest phase, None if any phase is unlimited."""
        phases = (self.connect, self.read, self.write, self.pool)
        return None if None in phases else max(p for p in phases if p is not None)


DEFAULT_TIMEOUT = Timeout(5.0)
NO_TIMEOUT = Timeout(None)

TimeoutTypes: TypeAlias = float | int | Timeout | None


def to_timeout(value: TimeoutTypes) -> Timeout:
    """``None``: no limit at all, as in httpx; a number: every phase."""
    if value is None:
        return NO_TIMEOUT
    if type(value) is Timeout:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, Timeout)):
        raise TypeError(
            f"timeout must be a number of seconds, httpcore.Timeout or None,"
            f" not {type(value).__name__}"
        )
    if isinstance(value, Timeout):
        return value
    return Timeout(value)


@dataclass(frozen=True, slots=True)
class Limits:
    """Pool sizing, as in encode's httpcore and urllib3."""

    max_connections: int | None = 100
    max_keepalive_connections: int | None = 20
    keepalive_expiry: float | None = 5.0

    def __post_init__(self) -> None:
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be >= 1 or None")
        if self.max_keepalive_connections is not None and self.max_keepalive_connections < 0:
            raise ValueError("max_keepalive_connections must be >= 0 or None")
        if self.keepalive_expiry is not None and not self.keepalive_expiry >= 0:
            raise ValueError("keepalive_expiry must be >= 0 or None")


@dataclass(frozen=True, slots=True)
class Proxy:
    """A forwarding / tunnelling proxy; credentials go to the proxy only."""

    url: str | bytes
    auth: tuple[str | bytes, str | bytes] | None = None
    headers: tuple[tuple[bytes, bytes], ...] | None = None


def default_ssl_context() -> ssl.SSLContext:
    """Verifying context with certifi's bundle; a fresh one per pool."""
    return ssl.create_default_context(cafile=certifi.where())
