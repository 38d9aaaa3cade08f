"""Types of the server fixtures, for annotations in tests."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol

from tests.servers.raw import Handler, RawServer


@dataclass(frozen=True)
class HTTPServer:
    port: int
    tls_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_base_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def url(self, path: str = "/echo") -> str:
        return self.base_url + path

    def https_url(self, path: str = "/echo", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.tls_port}{path}"


class RawFactory(Protocol):
    """The ``raw`` fixture: ``raw(handler, host="127.0.0.1", tls=None)``."""

    def __call__(
        self, handler: Handler, *, host: str = ..., tls: ssl.SSLContext | None = ...
    ) -> RawServer: ...
