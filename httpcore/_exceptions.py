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


class LocalProtocolError(ProtocolError, ValueError):
    """Bad protocol data from the caller (method, headers, body): also a
    ValueError, as a wrong value is in any Python library."""


class ProxyError(HTTPCoreError):
    pass


class UnsupportedProtocol(HTTPCoreError, ValueError):
    """A bad scheme or a malformed URL: also a ValueError."""


class ResponseNotRead(HTTPCoreError):
    pass


class StreamConsumed(HTTPCoreError):
    pass


class EngineClosed(HTTPCoreError):
    pass


for _cls in (
    HTTPCoreError,
    TimeoutException,
    ConnectTimeout,
    ReadTimeout,
    WriteTimeout,
    PoolTimeout,
    NetworkError,
    ConnectError,
    ReadError,
    WriteError,
    ProtocolError,
    RemoteProtocolError,
    LocalProtocolError,
    ProxyError,
    UnsupportedProtocol,
    ResponseNotRead,
    StreamConsumed,
    EngineClosed,
):
    _cls.__module__ = "httpcore"  # tracebacks print httpcore.ConnectError

_type_errors: dict[type[HTTPCoreError], type[HTTPCoreError]] = {}


def type_error(cls: type[HTTPCoreError], message: str) -> HTTPCoreError:
    """An instance of ``cls`` that is also a TypeError: protocol data of the
    wrong type is both a programming error and an httpcore error."""
    sub = _type_errors.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls, TypeError), {"__module__": "httpcore"})
        sub.__qualname__ = cls.__qualname__
        sub = _type_errors.setdefault(cls, sub)
    return sub(message)


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
    """A fresh copy of an engine-side error, to raise on the caller's side.

    The type and message are kept. For a network or protocol failure the
    cause is the foreign original (an ``OSError``, an SSL error) or, if there
    is none, the engine's instance, in both cases without the engine's
    frames: the user's traceback shows their own call once. An engine bug
    keeps its whole chain, frames included.
    """
    if isinstance(error, HTTPCoreError):
        try:
            copy = type(error)(*error.args)
        except Exception:
            copy = HTTPCoreError(str(error))
        if _is_bug(error):
            copy.__cause__ = error
        else:
            _drop_engine_frames(error)
            copy.__cause__ = error.__cause__ or error
        return copy
    copy = HTTPCoreError(f"internal error in the engine: {describe(error)}")
    copy.__cause__ = error
    return copy


def _is_bug(error: BaseException) -> bool:
    """An engine bug: not an error of ours, or one made from something that
    is neither ours nor an OS, SSL or protocol error."""
    seen = 0
    cause: BaseException | None = error
    while cause is not None and seen < 8:
        if not isinstance(cause, (HTTPCoreError, OSError, EOFError)) and not _is_protocol_lib(
            cause
        ):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def _is_protocol_lib(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("h11", "h2", "hpack", "hyperframe", "socksio", "asyncio"))


def _drop_engine_frames(error: BaseException) -> None:
    """The engine's frames say nothing to a user about a network or protocol
    failure: keep the chain of messages, drop the engine's tracebacks."""
    seen = 0
    cause: BaseException | None = error
    while cause is not None and seen < 8:
        cause.__traceback__ = None
        cause = cause.__cause__ or cause.__context__
        seen += 1
