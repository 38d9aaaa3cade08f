"""The one error hierarchy of httpcore.

Errors raised on the engine thread travel to the caller as values; the caller
re-raises a fresh instance of the same type with the engine's one as
``__cause__`` (see :func:`reraise`), so tracebacks never mix threads.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "EngineClosed",
    "HTTPCoreError",
    "LocalProtocolError",
    "NetworkError",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "ResponseNotRead",
    "StreamConsumed",
    "TimeoutException",
    "UnsupportedProtocol",
    "WriteError",
    "WriteTimeout",
]


class HTTPCoreError(Exception):
    """Base of every error httpcore raises."""


class TimeoutException(HTTPCoreError):
    pass


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class PoolTimeout(TimeoutException):
    pass


class NetworkError(HTTPCoreError):
    pass


class ConnectError(NetworkError):
    pass


class ReadError(NetworkError):
    pass


class WriteError(NetworkError):
    pass


class ProtocolError(HTTPCoreError):
    pass


class RemoteProtocolError(ProtocolError):
    pass


class LocalProtocolError(ProtocolError):
    pass


class ProxyError(HTTPCoreError):
    pass


class UnsupportedProtocol(HTTPCoreError):
    pass


class ResponseNotRead(HTTPCoreError):
    pass


class StreamConsumed(HTTPCoreError):
    pass


class EngineClosed(HTTPCoreError):
    pass


ExceptionMapping = Mapping[type[BaseException], type[HTTPCoreError]]


@contextlib.contextmanager
def map_exceptions(mapping: ExceptionMapping) -> Iterator[None]:
    """Translate foreign exceptions at an edge; ours pass through untouched."""
    try:
        yield
    except HTTPCoreError:
        raise
    except Exception as exc:
        for from_type, to_type in mapping.items():
            if isinstance(exc, from_type):
                raise to_type(describe(exc)) from exc
        raise


def describe(exc: BaseException) -> str:
    """A one-line message for ``exc`` that is never empty."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def reraise(error: BaseException) -> HTTPCoreError:
    """A fresh copy of an engine-side error for raising on the caller's side.

    Use as ``raise reraise(err) from err``: the type and message are kept,
    the engine's instance (with its own traceback and cause) becomes
    ``__cause__``.
    """
    if isinstance(error, HTTPCoreError):
        try:
            return type(error)(*error.args)
        except Exception:
            return HTTPCoreError(str(error))
    return HTTPCoreError(f"internal error in the engine: {describe(error)}")
