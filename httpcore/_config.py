"""Frozen, shareable policy values: timeouts, limits, proxy, SSL defaults."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TypeAlias

import certifi

__all__ = ["DEFAULT_TIMEOUT", "Limits", "Proxy", "Timeout", "TimeoutTypes", "default_ssl_context"]

_UNSET: float = -1.0


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
        timeout: float | None = _UNSET,
        *,
        connect: float | None = _UNSET,
        read: float | None = _UNSET,
        write: float | None = _UNSET,
        pool: float | None = _UNSET,
    ) -> None:
        base = 5.0 if timeout == _UNSET else timeout
        for name, value in (("connect", connect), ("read", read), ("write", write), ("pool", pool)):
            chosen = base if value == _UNSET else value
            if chosen is not None:
                chosen = float(chosen)
                if chosen < 0:
                    raise ValueError(f"timeout {name}={chosen} must be >= 0 or None")
            object.__setattr__(self, name, chosen)


DEFAULT_TIMEOUT = Timeout(5.0)

TimeoutTypes: TypeAlias = float | int | Timeout | None


def to_timeout(value: TimeoutTypes, default: Timeout = DEFAULT_TIMEOUT) -> Timeout:
    if value is None:
        return default
    if isinstance(value, Timeout):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Timeout(float(value))
    raise TypeError(f"timeout must be a float or httpcore.Timeout, not {type(value).__name__}")


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


@dataclass(frozen=True, slots=True)
class Proxy:
    """A forwarding / tunnelling proxy; credentials go to the proxy only."""

    url: str | bytes
    auth: tuple[str | bytes, str | bytes] | None = None
    headers: tuple[tuple[bytes, bytes], ...] | None = None


def default_ssl_context() -> ssl.SSLContext:
    """Verifying context with certifi's bundle; a fresh one per pool."""
    return ssl.create_default_context(cafile=certifi.where())
