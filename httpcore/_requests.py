"""A transport adapter for requests: ``session.mount("https://", RequestsAdapter())``.

requests keeps doing what requests does (redirects, cookies, auth, hooks,
``Session`` settings, proxies from the environment); the adapter only moves
the bytes, through :class:`httpcore.Client`. Everything requests and its users
see of a response is urllib3's: ``response.raw`` is a
``urllib3.response.HTTPResponse`` built on a file-like stream over
:meth:`httpcore.Response.stream`, so content decoding (gzip, deflate, brotli
and zstd when installed), ``raw.read(amt, decode_content=...)``,
``raw.stream()``, Content-Length enforcement and the exceptions requests
translates are urllib3's own code, unchanged.

Needs the ``requests`` extra (``pip install 'httpcore-actor[requests]'``);
``import httpcore`` alone never imports requests.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import ssl
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, cast

import requests
import requests.adapters
import urllib3
from requests.cookies import extract_cookies_to_jar
from requests.exceptions import (
    ConnectionError,
    ConnectTimeout,
    InvalidHeader,
    InvalidProxyURL,
    InvalidSchema,
    InvalidURL,
    ProxyError,
    ReadTimeout,
    SSLError,
)
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    DEFAULT_CA_BUNDLE_PATH,
    get_encoding_from_headers,
    prepend_scheme_if_needed,
    select_proxy,
    urldefragauth,
)
from urllib3.exceptions import InsecureRequestWarning
from urllib3.util import Timeout as Urllib3Timeout
from urllib3.util import parse_url

from . import _exceptions as errors
from ._config import Limits, Timeout
from .engine.messages import ConnectionInfo
from .engine.runner import Engine
from .frontends.sync import Client
from .frontends.sync import Response as CoreResponse

__all__ = ["RequestsAdapter"]

DEFAULT_LIMITS = Limits(max_connections=None, max_keepalive_connections=100, keepalive_expiry=5.0)
"""No cap on open connections, as requests' HTTPAdapter (``pool_block=False``)
never makes a caller wait for one; up to 100 idle ones kept (HTTPAdapter
keeps 10 per host for 10 hosts)."""

UPLOAD_BLOCK = 64 * 1024
"""Bytes read at a time from a file-like request body."""

_VERSIONS = {"HTTP/1.1": 11, "HTTP/2": 20, "HTTP/1.0": 10}

_ClientKey = tuple[object, ...]

# requests' helpers, typed here (some stubs leave them untyped).
_extract_cookies: Callable[[Any, Any, Any], None] = extract_cookies_to_jar
_prepend_scheme: Callable[[str, str], str] = prepend_scheme_if_needed


class RequestsAdapter(requests.adapters.BaseAdapter):
    """A requests transport adapter on httpcore's engine.

    One adapter may be mounted on any number of sessions and used from any
    number of threads. It keeps one :class:`httpcore.Client` per distinct
    TLS/proxy configuration (``verify``, ``cert``, proxy URL), created on
    first use, so threads and sessions with the same settings share
    connections, and an HTTP/2 origin one multiplexed connection.

    ``http1``/``http2`` choose the versions ALPN may pick on ``https://``
    (``http://`` is always HTTP/1.1); ``limits`` sizes each client's pool;
    ``retries`` retries failed connects (requests' HTTPAdapter default is 0);
    ``engine`` is an explicit :class:`httpcore.Engine` (default: the
    process-wide one).
    """

    def __init__(
        self,
        *,
        http1: bool = True,
        http2: bool = True,
        limits: Limits | None = None,
        retries: int = 0,
        engine: Engine | None = None,
    ) -> None:
        super().__init__()
        if not (http1 or http2):
            raise ValueError("at least one of http1 and http2 must be enabled")
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be httpcore.Limits, not {type(limits).__name__}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries={retries!r}: must be an int >= 0")
        self._http1 = http1
        self._http2 = http2
        self._limits = limits or DEFAULT_LIMITS
        self._retries = retries
        self._engine = engine
        self._lock = threading.Lock()
        self._clients: dict[_ClientKey, Client] = {}

    def __repr__(self) -> str:
        return f"<httpcore.RequestsAdapter [{len(self._clients)} clients]>"

    # requests pickles sessions, adapters included (the engine is not kept).
    def __getstate__(self) -> dict[str, object]:
        return {
            "http1": self._http1,
            "http2": self._http2,
            "limits": self._limits,
            "retries": self._retries,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            http1=state["http1"],
            http2=state["http2"],
            limits=state["limits"],
            retries=state["retries"],
        )

    def close(self) -> None:
        """Drop this adapter's clients: their idle connections close now, a
        response still being read keeps its own until it is done with (as
        HTTPAdapter only clears its pools); the adapter stays usable and opens
        new connections on demand. A thread sending through a client at this
        moment finishes its request."""
        with self._lock:
            clients, self._clients = self._clients, {}
        if not clients:
            return
        clients.clear()  # a client nothing refers to closes its pool at once
        # One round trip to the engine: those closes are carried out (GOAWAY,
        # TLS close_notify under way) when close() returns, not a moment later
        # while the caller may already be stopping the server.
        with contextlib.suppress(errors.HTTPCoreError):
            Client(engine=self._engine).connections()

    def connections(self) -> list[ConnectionInfo]:
        """The connections of all this adapter's clients (for introspection)."""
        with self._lock:
            clients = list(self._clients.values())
        return [info for client in clients for info in client.connections()]

    # -- sending ----------------------------------------------------------------

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | Urllib3Timeout | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Send a prepared request; requests' exceptions, urllib3's raw response."""
        url = request.url
        if url is None or request.method is None:
            raise ValueError("the request is not prepared")
        if isinstance(url, bytes):
            url = url.decode("utf-8")
        proxy = select_proxy(url, cast("dict[str, str]", proxies)) if proxies else None
        https = url[:6].lower() == "https:"
        client = self._client(https, verify, cert, proxy)
        core_timeout = _timeout(timeout)
        if "@" in url or "#" in url:
            url = urldefragauth(url)  # credentials are in the headers by now
        if https and verify is False:
            warnings.warn(
                f"Unverified HTTPS request is being made to host '{parse_url(url).host}'. "
                "Adding certificate verification is strongly advised. See: "
                "https://urllib3.readthedocs.io/en/latest/advanced-usage.html#tls-warnings",
                InsecureRequestWarning,
                stacklevel=2,
            )
        try:
            response = client.request(
                request.method,
                url,
                headers=list(request.headers.items()),
                body=_body(request.body),
                stream=True,
                timeout=core_timeout,
            )
        except errors.HTTPCoreError as exc:
            raise _send_error(exc, request, proxy) from exc
        raw = _raw(response, request.method)
        built = self.build_response(request, raw)
        if not stream and getattr(response, "_ended", False) and not _content_coded(raw):
            # The whole body came with the head and needs no decoding: read it
            # through urllib3 now (its state ends as after r.content), which
            # saves requests' chunked iter_content() over it.
            built._content = raw.read()
            cast(Any, built)._content_consumed = True
        return built

    def build_response(self, req: PreparedRequest, resp: urllib3.HTTPResponse) -> Response:
        """A requests Response around ``resp``, as HTTPAdapter.build_response does."""
        response = Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = cast(str, resp.reason)
        url = req.url
        response.url = url.decode("utf-8") if isinstance(url, bytes) else cast(str, url)
        if "set-cookie" in resp.headers or "set-cookie2" in resp.headers:
            _extract_cookies(response.cookies, req, resp)
        response.request = req
        cast(Any, response).connection = self
        return response

    # -- clients ------------------------------------------------------------------

    def _client(self, https: bool, verify: object, cert: object, proxy: str | None) -> Client:
        """The client for these settings: TLS settings count for https:// only,
        as in requests' ``cert_verify``."""
        if isinstance(cert, list):  # requests takes a [cert, key] list as a pair too
            cert = tuple(cert)
        key: _ClientKey = (verify, cert, proxy) if https else (None, None, proxy)
        client = self._clients.get(key)
        if client is not None:
            return client
        tls = _ssl_context(verify, cert) if https else None
        core_proxy = _proxy_url(proxy) if proxy else None
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = Client(
                    ssl=tls,
                    limits=self._limits,
                    http1=self._http1,
                    http2=self._http2,
                    proxy=core_proxy,
                    retries=self._retries,
                    engine=self._engine,
                )
                self._clients[key] = client
        return client


# -- settings ---------------------------------------------------------------------


def _ssl_context(verify: object, cert: object) -> ssl.SSLContext | None:
    """requests' ``verify``/``cert`` as a context (None: httpcore's default,
    certifi's bundle, which is also requests' default bundle)."""
    if verify is True and not cert:
        return None  # requests' default bundle is certifi's, as httpcore's
    if verify:
        location: Any = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
        if not isinstance(location, (str, os.PathLike)) or not os.path.exists(location):
            raise OSError(
                f"Could not find a suitable TLS CA certificate bundle, invalid path: {location}"
            )
        if os.path.isdir(location):
            ctx = ssl.create_default_context(capath=location)
        else:
            ctx = ssl.create_default_context(cafile=location)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        cert_file: Any
        key_file: Any
        if isinstance(cert, (str, bytes)):
            cert_file, key_file = cert, None
        else:
            cert_file, key_file = cast("tuple[Any, Any]", cert)
        if cert_file and not os.path.exists(cert_file):
            raise OSError(f"Could not find the TLS certificate file, invalid path: {cert_file}")
        if key_file and not os.path.exists(key_file):
            raise OSError(f"Could not find the TLS key file, invalid path: {key_file}")
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _proxy_url(proxy: str) -> str:
    """A proxy URL as requests' HTTPAdapter reads it (``http://`` if no scheme)."""
    proxy = _prepend_scheme(proxy, "http")
    parsed = parse_url(proxy)
    if not parsed.host:
        raise InvalidProxyURL(
            "Please check proxy URL. It is malformed and could be missing the host."
        )
    scheme = (parsed.scheme or "http").lower()
    if scheme not in ("http", "https", "socks5", "socks5h"):
        raise InvalidSchema(
            f"httpcore.RequestsAdapter: {scheme}:// proxies are not supported"
            " (http, https, socks5 and socks5h are)"
        )
    return proxy


_timeouts: dict[object, Timeout] = {}


def _timeout(value: object) -> Timeout:
    """requests' ``timeout=``: None, a number, a (connect, read) pair or a
    urllib3 Timeout; read also bounds writes, as a socket timeout does."""
    if type(value) in (float, int, tuple) or value is None:
        try:
            return _timeouts[value]
        except (KeyError, TypeError):
            pass
    converted = _convert_timeout(value)
    if type(value) in (float, int, tuple) or value is None:
        if len(_timeouts) >= 256:
            _timeouts.clear()
        try:
            _timeouts[value] = converted
        except TypeError:  # a tuple holding something unhashable
            pass
    return converted


def _convert_timeout(value: object) -> Timeout:
    if isinstance(value, tuple):
        try:
            connect, read = value
            resolved = Urllib3Timeout(connect=connect, read=read)
        except ValueError:
            raise ValueError(
                f"Invalid timeout {value}. Pass a (connect, read) timeout tuple, "
                f"or a single float to set both timeouts to the same value."
            ) from None
    elif isinstance(value, Urllib3Timeout):
        resolved = value
    else:
        resolved = Urllib3Timeout(connect=value, read=value)  # type: ignore[arg-type]
    connect_s = _seconds(resolved.connect_timeout)
    if resolved.total is not None:
        resolved = resolved.clone()
        resolved.start_connect()  # read_timeout with a total needs the clock started
    read_s = _seconds(resolved.read_timeout)
    return Timeout(connect=connect_s, read=read_s, write=read_s, pool=connect_s)


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _body(body: object) -> bytes | Iterable[bytes] | None:
    """requests' body (bytes, str, a file, an iterable) as httpcore takes it;
    str is sent as UTF-8, as urllib3 does."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "read"):
        return _read_blocks(body)
    return _encoded(cast("Iterable[bytes | str]", body))


def _read_blocks(file: Any) -> Iterator[bytes]:
    while True:
        block = file.read(UPLOAD_BLOCK)
        if not block:
            return
        yield block.encode("utf-8") if isinstance(block, str) else block


def _encoded(chunks: Iterable[bytes | str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk


# -- errors -------------------------------------------------------------------------


def _ssl_cause(exc: BaseException) -> ssl.SSLError | ssl.CertificateError | None:
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, (ssl.SSLError, ssl.CertificateError)):
            return cause
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


class ProxyConnectTimeout(ProxyError, ConnectTimeout):
    """Timed out connecting to a proxy: urllib3 reports a ``ProxyError`` there,
    and a caller catching ``requests.Timeout`` still catches it."""


def _send_error(
    exc: errors.HTTPCoreError, request: PreparedRequest, proxy: str | None
) -> Exception:
    """The requests exception HTTPAdapter raises where httpcore raised ``exc``
    (before the response head: the body's errors are the raw stream's)."""
    via_proxy = proxy is not None
    if isinstance(exc, errors.ConnectTimeout):
        if via_proxy:
            return ProxyConnectTimeout(exc, request=request)
        return ConnectTimeout(exc, request=request)
    if isinstance(exc, errors.ReadTimeout):
        # "Read timed out." is urllib3's wording, which callers look for
        timed_out = errors.ReadTimeout(f"Read timed out. ({exc})")
        timed_out.__cause__ = exc
        return ReadTimeout(timed_out, request=request)
    if isinstance(exc, errors.ProxyError):
        return ProxyError(exc, request=request)
    if isinstance(exc, errors.ConnectError):
        if _ssl_cause(exc) is not None:
            return SSLError(exc, request=request)
        if via_proxy and ("proxy" in str(exc).lower() or not str(proxy).startswith("socks")):
            return ProxyError(exc, request=request)
        return ConnectionError(exc, request=request)
    if isinstance(exc, errors.UnsupportedProtocol):
        if "scheme" in str(exc):
            return InvalidSchema(exc, request=request)
        return InvalidURL(exc, request=request)
    if isinstance(exc, errors.RemoteProtocolError) and "Content-Length" in str(exc):
        # urllib3: InvalidHeader for Content-Length values that disagree
        return InvalidHeader(exc, request=request)
    if isinstance(exc, errors.LocalProtocolError):
        text = str(exc)
        if "header" in text:
            return InvalidHeader(exc, request=request)
        if "URL" in text:
            return InvalidURL(exc, request=request)
        return exc
    if _ssl_cause(exc) is not None:
        return SSLError(exc, request=request)
    return ConnectionError(exc, request=request)


# -- the raw response -----------------------------------------------------------------


def _content_coded(raw: urllib3.HTTPResponse) -> bool:
    coding = raw.headers.get("content-encoding")
    return coding is not None and coding.strip().lower() not in ("", "identity")


def _raw(response: CoreResponse, method: str) -> urllib3.HTTPResponse:
    """urllib3's HTTPResponse over the httpcore response, as HTTPAdapter's."""
    headers = urllib3.HTTPHeaderDict()
    for name, value in response.headers:
        headers.add(name.decode("latin-1"), value.decode("latin-1"))
    reason = response.reason.decode("latin-1")
    if not reason and response.http_version == "HTTP/2":
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            pass
    body = BodyStream(response)
    return urllib3.HTTPResponse(
        body=body,
        headers=headers,
        status=response.status_code,
        version=_VERSIONS.get(response.http_version, 11),
        version_string=response.http_version,
        reason=reason,
        preload_content=False,
        decode_content=False,
        original_response=cast(http.client.HTTPResponse, body),
        enforce_content_length=True,
        request_method=method,
        request_url=None,
    )


class BodyStream(io.RawIOBase):
    """A file-like, read-only view of an httpcore response body.

    It is the ``fp`` (and the ``_original_response``, for requests' cookie
    code) of the urllib3 HTTPResponse requests gets. Reads take from the
    chunks :meth:`httpcore.Response.stream` yields; errors are raised as
    the ones http.client raises, which urllib3 then translates for requests:
    a read timeout as ``TimeoutError`` (requests: ``ConnectionError``, from
    urllib3's ``ReadTimeoutError``), a broken or truncated body as an
    ``http.client.HTTPException`` or ``OSError`` (``ChunkedEncodingError``),
    a TLS failure as ``ssl.SSLError`` (``SSLError``). ``close()`` before the
    end cancels the request in the engine, freeing its connection.
    """

    def __init__(self, response: CoreResponse) -> None:
        super().__init__()
        self._response = response
        self._chunks: Iterator[bytes] | None = None
        self._buffer = b""
        self._pos = 0
        self._eof = False
        self._msg: http.client.HTTPMessage | None = None

    @property
    def response(self) -> CoreResponse:
        """The httpcore response (status, headers, ``http_version``, trailers)."""
        return self._response

    @property
    def msg(self) -> http.client.HTTPMessage:
        """The head as http.client gives it (requests reads cookies from it)."""
        if self._msg is None:
            msg = http.client.HTTPMessage()
            for name, value in self._response.headers:
                msg[name.decode("latin-1")] = value.decode("latin-1")
            self._msg = msg
        return self._msg

    def readable(self) -> bool:
        return True

    def isclosed(self) -> bool:
        """As http.client's: true once the body is read to the end or closed."""
        return self.closed or (self._eof and self._pos >= len(self._buffer))

    def _fill(self) -> bool:
        """Take the next chunk into the buffer; False at the end."""
        if self._eof:
            return False
        if self._chunks is None:
            self._chunks = self._response.stream()
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._eof = True
            return False
        except errors.HTTPCoreError as exc:
            self._eof = True
            raise _body_error(exc) from exc
        self._buffer, self._pos = chunk, 0
        if getattr(self._response, "_ended", False):
            # That was the last chunk: finish the iterator now (trailers become
            # readable) so that isclosed() is true once the buffer is read, and
            # urllib3 needs no extra read to find the end.
            for _ in self._chunks:
                pass
            self._eof = True
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at the end of the body (as
        http.client's ``read(amt)``, which urllib3 counts on)."""
        if size is None or size < 0:
            return self.readall()
        if self.closed or size == 0:
            return b""
        if self._pos >= len(self._buffer) and not self._fill():
            return b""
        data = self._take(size)
        if len(data) == size:
            return data
        parts = [data]
        missing = size - len(data)
        while missing > 0 and self._fill():
            piece = self._take(missing)
            parts.append(piece)
            missing -= len(piece)
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, reading from the connection at most once."""
        if size < 0:
            size = 1 << 62
        if self.closed or size == 0:
            return b""
        if self._pos >= len(self._buffer) and not self._fill():
            return b""
        return self._take(size)

    def _take(self, size: int) -> bytes:
        buffer, pos = self._buffer, self._pos
        if pos == 0 and size >= len(buffer):
            self._buffer = b""
            return buffer
        end = pos + size
        self._pos = end
        return buffer[pos:end]

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        data = self.read1(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        parts = []
        if self._pos < len(self._buffer):
            parts.append(self._buffer[self._pos :])
        self._buffer, self._pos = b"", 0
        while not self.closed and self._fill():
            parts.append(self._buffer)
            self._buffer = b""
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
        super().close()


def _body_error(exc: errors.HTTPCoreError) -> Exception:
    """An error while the body streams, as http.client would raise it."""
    text = f"httpcore.{type(exc).__name__}: {exc}"
    if isinstance(exc, errors.TimeoutException):
        return TimeoutError(text)
    tls = _ssl_cause(exc)
    if isinstance(tls, ssl.SSLError):
        return ssl.SSLError(text)
    if isinstance(exc, errors.ProtocolError):
        return http.client.HTTPException(text)
    return OSError(text)
