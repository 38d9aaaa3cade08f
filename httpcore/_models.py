"""Request values built and validated on the caller's side.

Everything here runs before a message crosses to the engine, so bad input
fails in the caller's thread with a clear error and nothing is sent.
"""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import re
import ssl
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import unquote_to_bytes

from ._exceptions import LocalProtocolError, ProxyError, UnsupportedProtocol, type_error

__all__ = ["URL", "HeaderTypes", "Origin", "ProxySpec", "Request", "build_request", "parse_proxy"]

HeaderTypes: TypeAlias = (
    Sequence[tuple[bytes | str, bytes | str]] | Mapping[bytes | str, bytes | str] | None
)

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""What a method or field name is made of: deleting these leaves nothing of one."""
_TOKEN = re.compile(b"[" + re.escape(_TOKEN_BYTES) + b"]+")
"""A method or field name, with ``fullmatch`` (``$`` would let a final LF by)."""
_REFUSED_IN_VALUES = b"\x00\r\n\x0b\x0c"
"""Bytes h11 refuses in a field value; checked here so the engine need not."""
_BAD_VALUE = re.compile(b"[" + re.escape(_REFUSED_IN_VALUES) + b"]")
_BLANKS = b" \t"
_ODD_IN_VALUES = _REFUSED_IN_VALUES + _BLANKS
"""A refused byte or a blank: a value holding none needs no closer look."""
_BAD_URL = re.compile(rb"[\x00-\x20\x7f]")
_BAD_URL_TEXT = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")
"""Refused anywhere in a URL, the fragment included: never on the wire."""
_METHODS: dict[str | bytes, bytes] = {
    m: m.encode("ascii") if isinstance(m, str) else m
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE")
    for m in (name, name.encode("ascii"))
}
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and port: the key of a connection."""

    scheme: bytes
    host: bytes
    port: int

    def __str__(self) -> str:
        return f"{self.scheme.decode('ascii')}://{self.host_port.decode('ascii')}"

    @property
    def host_port(self) -> bytes:
        """``host:port`` with the port always given (IPv6 in brackets)."""
        return self._url_host + b":" + str(self.port).encode("ascii")

    @property
    def authority(self) -> bytes:
        """``host[:port]`` as in a URL: a default port is left out."""
        if _DEFAULT_PORTS.get(self.scheme) == self.port:
            return self._url_host
        return self.host_port

    @property
    def _url_host(self) -> bytes:
        # An IPv6 zone id only means something to this machine: it is used
        # to connect, never sent.
        return b"[" + self.host.split(b"%", 1)[0] + b"]" if b":" in self.host else self.host


@dataclass(frozen=True, slots=True)
class URL:
    origin: Origin
    target: bytes
    authority: bytes
    """The Host header value, computed once per parsed URL."""

    def __str__(self) -> str:
        return str(self.origin) + self.target.decode("ascii", "replace")


def _to_bytes(value: str | bytes, what: str, encoding: str = "ascii") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode(encoding)
        except UnicodeEncodeError:
            raise LocalProtocolError(f"{what} {value!r} is not {encoding}-encodable") from None
    raise type_error(LocalProtocolError, f"{what} must be str or bytes, not {type(value).__name__}")


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?")
"""One DNS label as the resolver takes it (underscores, as in practice)."""
_ZONE = re.compile(r"[A-Za-z0-9._~\-]+")
"""An IPv6 zone id (RFC 6874: unreserved characters)."""


def _encode_host(host: str) -> bytes:
    """The host as it goes to the resolver and, ASCII, onto the wire.

    Everything is checked after encoding: IDNA keeps ASCII labels as they
    are, CR/LF included, so only the result can be trusted.
    """
    if not host:
        raise UnsupportedProtocol("URL has no host")
    if host.startswith("["):
        return _encode_ipv6(host)
    if host.isascii():
        encoded = host.lower()
    else:
        try:
            encoded = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise UnsupportedProtocol(f"host {host!r} is not a valid IDNA name") from None
    name = encoded[:-1] if encoded.endswith(".") else encoded
    if not name or len(name) > 253:
        raise UnsupportedProtocol(f"host {host!r} is empty or longer than 253 characters")
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            raise UnsupportedProtocol(_label_problem(host, label))
    return encoded.encode("ascii")


def _label_problem(host: str, label: str) -> str:
    if not label:
        return f"host {host!r} has an empty label"
    if len(label) > 63:
        return f"host {host!r} has a label longer than 63 characters"
    return f"invalid character in host {host!r}"


def _encode_ipv6(host: str) -> bytes:
    if not host.endswith("]"):
        raise UnsupportedProtocol(f"malformed IPv6 literal {host!r}")
    address, pct, zone = host[1:-1].partition("%")
    if pct:
        zone = zone[2:] if zone.startswith("25") else zone  # RFC 6874: %25
        if not _ZONE.fullmatch(zone):
            raise UnsupportedProtocol(f"malformed IPv6 zone id in {host!r}")
    try:
        literal = ipaddress.IPv6Address(address).compressed
    except ValueError:
        raise UnsupportedProtocol(f"malformed IPv6 literal {host!r}") from None
    return (literal + "%" + zone if pct else literal).encode("ascii")


_url_cache: dict[str | bytes, URL] = {}
_URL_CACHE_SIZE = 512


def parse_url(url: str | bytes) -> URL:
    """Parse an absolute URL, remembering recent ones (callers repeat them)."""
    if not isinstance(url, (str, bytes)):
        return _parse_url(url)
    parsed = _url_cache.get(url)
    if parsed is None:
        parsed = _parse_url(url)
        if len(_url_cache) >= _URL_CACHE_SIZE:
            _url_cache.clear()
        _url_cache[url] = parsed
    return parsed


def _parse_url(url: str | bytes) -> URL:
    """Parse an absolute ``http``/``https`` URL; the fragment is dropped."""
    if isinstance(url, bytes):
        try:
            text = url.decode("ascii")
        except UnicodeDecodeError:
            raise UnsupportedProtocol(f"URL {url!r} is not ASCII") from None
    elif isinstance(url, str):
        text = url
    else:
        raise type_error(UnsupportedProtocol, f"URL must be str or bytes, not {type(url).__name__}")
    if _BAD_URL_TEXT.search(text):
        raise UnsupportedProtocol(f"URL {text!r} has whitespace or control characters")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise UnsupportedProtocol(f"URL {text!r} has no scheme; use http:// or https://")
    scheme_b = scheme.lower().encode("ascii", "replace")
    if scheme_b not in _DEFAULT_PORTS:
        raise UnsupportedProtocol(f"unsupported URL scheme {scheme!r}; use http:// or https://")
    rest = rest.split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:]
    if "@" in authority:
        raise UnsupportedProtocol(
            "credentials in the URL are not supported; send an Authorization header instead"
        )
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise UnsupportedProtocol(f"malformed IPv6 literal in {text!r}")
        host, port_part = authority[: end + 1], authority[end + 1 :]
        if port_part and not port_part.startswith(":"):
            raise UnsupportedProtocol(f"malformed authority {authority!r}")
        port_text = port_part[1:]
    else:
        host, _, port_text = authority.partition(":")
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise UnsupportedProtocol(f"invalid port {port_text!r} in {text!r}")
        port = int(port_text)
    else:
        port = _DEFAULT_PORTS[scheme_b]
    host_b = _encode_host(host)
    if not target:
        target = "/"
    elif target.startswith("?"):
        target = "/" + target
    try:
        target_b = target.encode("ascii")
    except UnicodeEncodeError:
        raise UnsupportedProtocol(
            f"URL path {target!r} has non-ASCII characters; percent-encode them"
        ) from None
    if _BAD_URL.search(target_b):
        raise UnsupportedProtocol(f"URL {text!r} has whitespace or control characters")
    origin = Origin(scheme_b, host_b, port)
    return URL(origin, target_b, origin.authority)


def normalize_headers(headers: HeaderTypes) -> list[tuple[bytes, bytes]]:
    """Bytes pairs, refusing anything that could split or smuggle a header."""
    if type(headers) is list:
        plain = _plain_headers(headers)
        if plain is not None:
            return plain
    if headers is None:
        return []
    items: Iterable[tuple[str | bytes, str | bytes]]
    if isinstance(headers, Mapping):
        items = headers.items()
    elif isinstance(headers, (str, bytes)):
        raise type_error(
            LocalProtocolError, "headers must be a sequence of (name, value) pairs or a mapping"
        )
    else:
        items = headers
    try:
        iterator = iter(items)
    except TypeError:
        raise type_error(
            LocalProtocolError,
            f"headers must be a sequence of (name, value) pairs or a mapping,"
            f" not {type(headers).__name__}",
        ) from None
    out: list[tuple[bytes, bytes]] = []
    for pair in iterator:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise type_error(
                LocalProtocolError, f"header {pair!r} is not a (name, value) pair"
            ) from None
        name_b = _to_bytes(name, "header name")
        value_b = _to_bytes(value, "header value", "latin-1")
        if not _TOKEN.fullmatch(name_b):
            raise LocalProtocolError(f"illegal header name {name_b!r}")
        if _BAD_VALUE.search(value_b):
            raise LocalProtocolError(
                f"illegal header value {value_b!r} for {name_b!r}: CR, LF, NUL, VT or FF"
            )
        out.append((name_b, value_b.strip(b" \t")))
    return out


def _plain_headers(headers: list[Any]) -> list[tuple[bytes, bytes]] | None:
    """The common case checked in a few C calls instead of several per field:
    a list of (bytes, bytes) tuples, every name a token, no value with a
    refused byte or whitespace to strip. None sends the list the long way,
    which converts, strips, or names the bad field."""
    names: list[bytes] = []
    values: list[bytes] = []
    for pair in headers:
        if type(pair) is not tuple or len(pair) != 2:
            return None
        name, value = pair
        if type(name) is not bytes or type(value) is not bytes:
            return None
        names.append(name)
        values.append(value)
    if b"".join(names).translate(None, _TOKEN_BYTES) or b"" in names:
        return None
    joined = b"".join(values)
    if len(joined.translate(None, _ODD_IN_VALUES)) != len(joined):
        if _BAD_VALUE.search(joined):
            return None
        for value in values:
            if value and (value[0] in _BLANKS or value[-1] in _BLANKS):
                return None
    return list(headers)


@dataclass(frozen=True, slots=True)
class ProxySpec:
    """A validated proxy: where it is and what it must be told."""

    origin: Origin
    headers: tuple[tuple[bytes, bytes], ...]
    """Sent to the proxy only (``Proxy-Authorization`` among them)."""
    ssl_context: ssl.SSLContext | None
    """For an ``https://`` proxy: verifies the proxy itself."""
    socks_auth: tuple[bytes, bytes] | None = None
    """SOCKS5 username and password (RFC 1929)."""

    @property
    def socks(self) -> bool:
        """A SOCKS5 proxy: every origin is tunnelled, none forwarded."""
        return self.origin.scheme in _SOCKS_SCHEMES

    @property
    def remote_dns(self) -> bool:
        """``socks5h://``: the proxy resolves the origin's name."""
        return self.origin.scheme == b"socks5h"


_SOCKS_SCHEMES = frozenset({b"socks5", b"socks5h"})


def parse_proxy(
    url: str | bytes,
    auth: tuple[str | bytes, str | bytes] | None,
    headers: HeaderTypes,
    ssl_context: ssl.SSLContext | None,
) -> ProxySpec:
    if not isinstance(url, (str, bytes)):
        raise type_error(ProxyError, f"proxy URL must be str or bytes, not {type(url).__name__}")
    text = url.decode("ascii", "replace") if isinstance(url, bytes) else url
    scheme = text.partition("://")[0].lower()
    socks = scheme.encode("ascii", "replace") in _SOCKS_SCHEMES
    if scheme.startswith("socks") and not socks:
        raise ProxyError(f"{scheme}:// proxies are not supported; use socks5:// or socks5h://")
    if socks and importlib.util.find_spec("socksio") is None:
        raise ProxyError("SOCKS proxies need socksio: pip install 'httpcore-actor[socks]'")
    userinfo = b""
    rest = text.partition("://")[2]
    authority = rest.split("/", 1)[0]
    if "@" in authority:
        userinfo = unquote_to_bytes(authority.rsplit("@", 1)[0])
        text = text.replace(authority, authority.rsplit("@", 1)[1], 1)
    if socks:
        text = "http" + text[len(scheme) :]
    try:
        parsed = parse_url(text)
    except UnsupportedProtocol as exc:
        raise ProxyError(f"bad proxy URL {text!r}: {exc}") from None
    if auth is not None:
        user, password = (_to_bytes(part, "proxy credential", "utf-8") for part in auth)
        userinfo = user + b":" + password
    origin = parsed.origin
    if socks:
        hostport = authority.rsplit("@", 1)[-1]
        port = origin.port if ":" in hostport.rsplit("]", 1)[-1] else 1080
        origin = Origin(scheme.encode("ascii"), origin.host, port)
        credentials = None
        if userinfo:
            user, _, password = userinfo.partition(b":")
            if len(user) > 255 or len(password) > 255:
                raise ProxyError("SOCKS5 username and password are 255 bytes at most")
            credentials = (user, password)
        return ProxySpec(origin, (), None, credentials)
    hdrs = normalize_headers(headers)
    if userinfo:
        hdrs.append((b"Proxy-Authorization", b"Basic " + base64.b64encode(userinfo)))
    return ProxySpec(origin, tuple(hdrs), ssl_context)


@dataclass(slots=True)
class Request:
    """A validated request; ``body`` is bytes, or None when it streams.
    Never changed once built (not declared frozen: see ``engine.messages``)."""

    method: bytes
    url: URL
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    streaming_body: bool

    @property
    def idempotent(self) -> bool:
        return self.method in _IDEMPOTENT and not self.streaming_body


def build_request(
    method: str | bytes,
    url: str | bytes,
    headers: HeaderTypes,
    body: object,
    *,
    is_async: bool,
) -> tuple[Request, Iterable[bytes] | AsyncIterable[bytes] | None]:
    """Validate everything; return the request and any streaming body source."""
    method_b = _METHODS.get(method) if isinstance(method, (str, bytes)) else None
    if method_b is None:
        method_b = _to_bytes(method, "method")
        if not _TOKEN.fullmatch(method_b):
            raise LocalProtocolError(f"illegal method {method_b!r}")
    parsed = parse_url(url)
    if headers:
        hdrs = normalize_headers(headers)
        # b" name name ... ": one substring search per question below
        names = b" %b " % b" ".join([name for name, _ in hdrs]).lower()
    else:
        hdrs, names = [], b""
    source: Iterable[bytes] | AsyncIterable[bytes] | None = None
    data: bytes | None
    if body is None:
        data = b""
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        if b" content-length " not in names and b" transfer-encoding " not in names:
            hdrs.append((b"Content-Length", str(len(data)).encode("ascii")))
    elif isinstance(body, (str, Mapping)):
        raise type_error(
            LocalProtocolError,
            f"body must be bytes, an iterable of bytes or None, not {type(body).__name__}",
        )
    elif is_async and isinstance(body, AsyncIterable):
        source, data = body, None
    elif isinstance(body, Iterable):
        source, data = body, None
    else:
        what = "an async iterable, " if is_async else ""
        raise type_error(
            LocalProtocolError,
            f"body must be bytes, {what}an iterable of bytes or None, not {type(body).__name__}",
        )
    if (
        source is not None
        and b" content-length " not in names
        and b" transfer-encoding " not in names
    ):
        hdrs.append((b"Transfer-Encoding", b"chunked"))
    if b" host " not in names:
        hdrs.insert(0, (b"Host", parsed.authority))
    return Request(method_b, parsed, hdrs, data, source is not None), source
