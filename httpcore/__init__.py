"""httpcore: a low-level HTTP client whose sockets live on one engine thread."""

import logging as _logging
from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._config import Limits, Proxy, Timeout
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    EngineClosed,
    HTTPCoreError,
    LocalProtocolError,
    NetworkError,
    PoolTimeout,
    ProtocolError,
    ProxyError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    ResponseNotRead,
    StreamConsumed,
    TimeoutException,
    UnsupportedProtocol,
    WriteError,
    WriteTimeout,
)
from .engine.messages import ConnectionInfo
from .engine.runner import Engine
from .frontends.aio import AsyncResponse, PoolManager, request
from .frontends.sync import Client, Response

if _TYPE_CHECKING:
    from ._requests import RequestsAdapter

__version__ = "0.1.0"

_logging.getLogger("httpcore").addHandler(_logging.NullHandler())

__all__ = [
    "AsyncResponse",
    "Client",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionInfo",
    "Engine",
    "EngineClosed",
    "HTTPCoreError",
    "Limits",
    "LocalProtocolError",
    "NetworkError",
    "PoolManager",
    "PoolTimeout",
    "ProtocolError",
    "Proxy",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "RequestsAdapter",
    "Response",
    "ResponseNotRead",
    "StreamConsumed",
    "Timeout",
    "TimeoutException",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
    "__version__",
    "request",
]


def __getattr__(name: str) -> object:
    # RequestsAdapter needs requests (the `requests` extra): imported on first
    # use, so that `import httpcore` never imports requests.
    if name == "RequestsAdapter":
        try:
            from ._requests import RequestsAdapter
        except ImportError as exc:
            raise ImportError(
                f"httpcore.RequestsAdapter needs requests: pip install 'httpcore-actor[requests]'"
                f" ({exc})"
            ) from exc
        globals()[name] = RequestsAdapter
        return RequestsAdapter
    raise AttributeError(f"module 'httpcore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"RequestsAdapter"})
