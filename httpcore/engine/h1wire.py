# Runs on the engine thread only (pure functions: no state, no I/O). The
# HTTP/1.1 fast lane: the common request written, the common head parsed.
"""The HTTP/1.1 fast lane, apart from the h11 driver that falls back on it.

The common exchange (a request framed by Content-Length or nothing, an
HTTP/1.1 response head complete in the first read and framed by one
Content-Length) is written and parsed here, with a strict subset of h11's
grammar: h11's event layer was 40% of the engine's time per small request.
Whatever these functions decline (they return None) goes to h11 from the
response's first byte, so h11 decides every case the lane does not take.
``tests/test_h1_fastlane.py`` holds them to h11 as the oracle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .interfaces import MAX_HEAD_SIZE, MAX_HEADER_FIELDS

# The fast lane: a strict subset of what h11 accepts, for the common exchange.
# Everything outside it (chunked, 1xx, HTTP/1.0, a head split across reads,
# obs-fold, odd framing, any error) is handed to h11 as if h11 had seen the
# exchange from the start, so h11 stays the judge of every other case.
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?\r\n")
_VCHAR = rb"[\x21-\x7e\x80-\xff]"


def _field(group: bytes) -> bytes:
    """h11's header-field, narrowed to visible ASCII and obs-text."""
    return (
        group + rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*"
        + group + rb"(?:" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?)[ \t]*\r\n"
    )


_FIELDS = re.compile(_field(b"("))
_FIELD_BLOCK = re.compile(rb"(?:" + _field(b"(?:") + rb")*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_NO_BODY_STATUS = (204, 304)

FastHead = tuple[int, bytes, list[tuple[bytes, bytes]], int, bool]
"""status, reason, headers, body length, keep-alive."""


def wire_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes | None
) -> tuple[bytes, bool] | None:
    """The request as h11 would write it, and whether it asks to close the
    connection, when its framing is plain Content-Length; None sends it
    through h11 instead."""
    if body is None or method == b"CONNECT":
        return None
    lengths = []
    host = []
    rest = []
    close = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            lengths.append(value)
        elif lower == b"transfer-encoding":
            return None
        elif lower == b"connection" and not close:
            close = has_close(value)
        line = name + b": " + value + b"\r\n"
        if lower == b"host":
            host.append(line)
        else:
            rest.append(line)
    if lengths != ([str(len(body)).encode("ascii")] if body else []):
        return None
    if len(host) != 1:
        return None
    head = (method, b" ", target, b" HTTP/1.1\r\n", *host, *rest, b"\r\n", body)
    return b"".join(head), close


_Fields = tuple[int, bytes, tuple[tuple[bytes, bytes], ...], int, bool]
"""status, reason, headers, content-length (-1: none), Connection: close."""
HeadMemo = dict[bytes, _Fields]
"""Heads already parsed on one connection, by their bytes: a server repeats a
few heads (nginx's change once a second, with its Date), and parsing one was
~11% of the engine's time per small HTTP/1.1 request."""
_HEADS_REMEMBERED = 32


def parse_head(
    data: bytes, method: bytes, request_close: bool, memo: HeadMemo | None = None
) -> tuple[FastHead, int] | None:
    """A complete HTTP/1.1 final response head framed by one Content-Length,
    parsed exactly as h11 would, and where its body starts; None otherwise.
    ``memo`` remembers heads parsed before (the caller's, one per connection)."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD_SIZE:
        return None
    if memo is None:
        fields = _parse_fields(data, end)
    else:
        key = data[:end]
        fields = memo.get(key)
        if fields is None:
            fields = _parse_fields(data, end)
            if fields is not None:
                if len(memo) >= _HEADS_REMEMBERED:
                    memo.clear()
                memo[key] = fields
    if fields is None:
        return None
    status, reason, headers, length, closes = fields
    if method == b"HEAD" or status in _NO_BODY_STATUS:
        length = 0
    elif length < 0:
        return None
    return (status, reason, list(headers), length, not (request_close or closes)), end + 4


def _parse_fields(data: bytes, end: int) -> _Fields | None:
    """The head ending at ``end`` (its blank line), if the lane takes it."""
    status_line = _STATUS_LINE.match(data)
    if status_line is None:
        return None
    status = int(status_line[1])
    if status < 200:
        return None
    start = status_line.end()
    if _FIELD_BLOCK.fullmatch(data, start, end + 2) is None:
        return None
    headers = _FIELDS.findall(data, start, end + 2)
    if len(headers) > MAX_HEADER_FIELDS:
        return None
    length = -1
    closes = False
    for name, value in headers:
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            if length >= 0 or _DIGITS.fullmatch(value) is None:
                return None
            length = int(value)
        elif size == 17 and name.lower() == b"transfer-encoding":
            return None
        elif size == 10 and not closes and name.lower() == b"connection" and has_close(value):
            closes = True
    return status, status_line[2] or b"", tuple(headers), length, closes


def asks_close(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(
        len(name) == 10 and name.lower() == b"connection" and has_close(value)
        for name, value in headers
    )


def has_close(value: bytes) -> bool:
    return any(token.strip().lower() == b"close" for token in value.split(b","))
