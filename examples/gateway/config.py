"""Routes from a small TOML file.

```toml
[[route]]
prefix = "/api"                  # path prefix; the longest match wins
host = "api.example.com"         # optional: only for this Host
upstreams = ["http://10.0.0.1:8000", "https://10.0.0.2:8443"]
preserve_host = false            # true: send the client's Host upstream
connect_timeout = 2.0            # seconds
read_timeout = 30.0              # longest wait for upstream bytes
max_body = 10485760              # bytes of request body; larger is 413
protocol = "auto"                # or "http1", or "h2c" (HTTP/2 prior knowledge)
ca_file = "upstream-ca.pem"      # optional: the CA of https:// upstreams
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import tomllib

DOWN_FOR = 5.0
"""Seconds an upstream that failed to connect is left out of balancing."""


@dataclass(eq=False)
class Upstream:
    """One upstream base URL and what passive health checks know of it."""

    url: str
    outstanding: int = 0
    down_until: float = 0.0
    failures: int = 0

    @property
    def base(self) -> str:
        return self.url.rstrip("/")


@dataclass(eq=False)
class Route:
    prefix: str
    upstreams: list[Upstream]
    host: str | None = None
    preserve_host: bool = False
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    max_body: int = 10 * 1024 * 1024
    protocol: str = "auto"
    ca_file: str | None = None

    def matches(self, host: str, path: str) -> bool:
        if self.host is not None and host != self.host:
            return False
        if self.prefix == "/":
            return True
        return path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")

    def pick(self, now: float) -> list[Upstream]:
        """Upstreams to try, in order: those up, least outstanding requests
        first; when all are down, all of them (better a try than a 502)."""
        up = [u for u in self.upstreams if u.down_until <= now]
        return sorted(up or self.upstreams, key=lambda u: u.outstanding)


@dataclass
class Config:
    routes: list[Route] = field(default_factory=list)

    def route(self, host: str, path: str) -> Route | None:
        for route in self.routes:  # sorted: host-specific, then longest prefix
            if route.matches(host, path):
                return route
        return None


def load(path: str | Path) -> Config:
    with open(path, "rb") as f:
        return parse(tomllib.load(f))


def parse(data: dict[str, object]) -> Config:
    raw_routes = data.get("route", [])
    if not isinstance(raw_routes, list) or not raw_routes:
        raise ValueError("the config needs at least one [[route]]")
    routes = []
    for i, raw in enumerate(raw_routes):
        if not isinstance(raw, dict):
            raise ValueError(f"route {i}: not a table")
        prefix = raw.get("prefix", "/")
        upstreams = raw.get("upstreams")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"route {i}: prefix must start with '/'")
        if not isinstance(upstreams, list) or not upstreams:
            raise ValueError(f"route {prefix}: upstreams must be a non-empty list of URLs")
        for url in upstreams:
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"route {prefix}: bad upstream {url!r}")
        routes.append(
            Route(
                prefix=prefix,
                upstreams=[Upstream(url) for url in upstreams],
                host=raw.get("host"),
                preserve_host=bool(raw.get("preserve_host", False)),
                connect_timeout=float(raw.get("connect_timeout", 2.0)),
                read_timeout=float(raw.get("read_timeout", 30.0)),
                max_body=int(raw.get("max_body", 10 * 1024 * 1024)),
                protocol=_protocol(raw.get("protocol", "auto"), prefix),
                ca_file=raw.get("ca_file"),
            )
        )
    routes.sort(key=lambda r: (r.host is None, -len(r.prefix)))
    return Config(routes)


def _protocol(value: object, prefix: str) -> str:
    if value not in ("auto", "http1", "h2c"):
        raise ValueError(f"route {prefix}: protocol must be auto, http1 or h2c")
    return str(value)
