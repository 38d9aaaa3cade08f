"""httpcore: a low-level HTTP client whose sockets live on one engine thread."""

import logging as _logging

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
