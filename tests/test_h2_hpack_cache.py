"""The HPACK caches of ``engine/http2.py`` against plain hpack.

The engine's encoder and decoder reuse a block's result when the HPACK
table cannot have changed it. These tests run sequences of header lists
and blocks, with repeats, table-size updates, indexed and never-indexed
fields, oversized entries and broken blocks, through both the caching and
the plain coder, and require the same bytes, the same fields, the same
errors and the same table after every step. The end-to-end side (nginx,
which keeps its table at size 0 and so hits the decoder cache on every
response, and hypercorn, which indexes) is in ``test_h2_multiplex.py``;
the last test here drives nginx with changing headers.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import httpcore
from httpcore.engine.h2compat import CachingDecoder as _CachingDecoder
from httpcore.engine.h2compat import CachingEncoder as _CachingEncoder
from tests.servers.h2nginx import Nginx

CHECK = settings(max_examples=400, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

FIELDS = st.sampled_from([
    (b":method", b"GET"), (b":path", b"/"), (b":path", b"/a"), (b":authority", b"example"),
    (b"x-a", b"1"), (b"x-a", b"2"), (b"date", b"Tue, 24 Nov 2026 12:00:00 GMT"),
    (b"x-big", b"v" * 5000), (b"content-length", b"12"),
])
HEADER_LISTS = st.lists(FIELDS, min_size=1, max_size=5)
TABLE_SIZES = st.sampled_from([0, 64, 256, 4096])


def _table(coder: Any) -> tuple[object, ...]:
    table = coder.header_table
    return (list(table.dynamic_entries), table.maxsize, table.resized)


@CHECK
@given(steps=st.lists(st.one_of(HEADER_LISTS, TABLE_SIZES), min_size=1, max_size=25))
def test_encoder_cache_gives_hpacks_bytes(steps: list[Any]) -> None:
    plain, caching = hpack.Encoder(), _CachingEncoder()
    for step in steps:
        if isinstance(step, int):
            plain.header_table_size = step
            caching.header_table_size = step
            continue
        assert caching.encode(list(step)) == plain.encode(list(step))
        assert _table(caching) == _table(plain)


def test_encoder_cache_sees_a_table_size_change() -> None:
    """A size change that empties the table, then a block that adds nothing:
    a list cached before must not be encoded against the old entries."""
    plain, caching = hpack.Encoder(), _CachingEncoder()
    indexed = [(b"x-a", b"1"), (b":authority", b"example")]
    steps: list[Any] = [indexed, indexed, 0, [(b":method", b"GET")], 4096,
                        [(b":method", b"GET")], indexed]
    for step in steps:
        if isinstance(step, int):
            plain.header_table_size = caching.header_table_size = step
            continue
        assert caching.encode(list(step)) == plain.encode(list(step))
        assert _table(caching) == _table(plain)


def test_encoder_cache_keeps_never_indexed_fields_apart() -> None:
    plain, caching = hpack.Encoder(), _CachingEncoder()
    secret = [hpack.NeverIndexedHeaderTuple(b"authorization", b"x")]
    for headers in (secret, [(b"authorization", b"x")], secret, [(b"authorization", b"x")]):
        assert caching.encode(list(headers)) == plain.encode(list(headers))


@st.composite
def block_sequences(draw: st.DrawFn) -> list[bytes | int]:
    """Blocks as a server's encoder makes them, repeated, sometimes corrupted;
    an int is a new header list limit (h2 sets one when SETTINGS are acked)."""
    encoder = hpack.Encoder()
    blocks: list[bytes] = []
    steps: list[bytes | int] = []
    for _ in range(draw(st.integers(1, 20))):
        choice = draw(st.integers(0, 10))
        if choice == 0:
            encoder.header_table_size = draw(TABLE_SIZES)
            continue
        if choice == 10:
            steps.append(draw(st.sampled_from([65536, 6000, 100])))
            continue
        if choice == 1 and blocks:
            block = draw(st.sampled_from(blocks))
        elif choice == 2 and blocks:
            block = draw(st.sampled_from(blocks))
            block = block[: draw(st.integers(0, len(block)))] + b"\xff"
        else:
            headers = draw(HEADER_LISTS)
            block = encoder.encode([(n, v, draw(st.booleans())) for n, v in headers])
        blocks.append(block)
        steps.append(block)
    return steps


def _decode(decoder: hpack.Decoder, block: bytes) -> object:
    try:
        fields = decoder.decode(block, raw=True)
        return [(type(f).__name__, bytes(f[0]), bytes(f[1])) for f in fields]
    except hpack.HPACKError as exc:
        # hpack names the buffer it failed on by its address: not part of the error.
        return type(exc).__name__, _ADDRESS.sub("<memory>", str(exc))


_ADDRESS = re.compile(r"<memory at 0x[0-9a-f]+>")


@CHECK
@given(blocks=block_sequences(), max_allowed=st.sampled_from([4096, 256]),
       list_limit=st.sampled_from([65536, 6000]))
def test_decoder_cache_gives_hpacks_fields(blocks: list[bytes | int], max_allowed: int,
                                           list_limit: int) -> None:
    plain, caching = hpack.Decoder(max_header_list_size=list_limit), _CachingDecoder(list_limit)
    plain.max_allowed_table_size = caching.max_allowed_table_size = max_allowed
    for block in blocks:
        if isinstance(block, int):
            plain.max_header_list_size = caching.max_header_list_size = block
            continue
        assert _decode(caching, block) == _decode(plain, block)
        assert _table(caching) == _table(plain)


def test_decoder_cache_sees_a_new_header_list_limit() -> None:
    """A block cached under one limit is refused once h2 sets a lower one."""
    server = hpack.Encoder()
    server.header_table_size = 0
    plain, caching = hpack.Decoder(max_header_list_size=65536), _CachingDecoder(65536)
    blocks = [server.encode([(b":status", b"200")])]
    blocks.append(server.encode([(b":status", b"200"), (b"x-big", b"v" * 200)]))
    for limit in (65536, 100):
        plain.max_header_list_size = caching.max_header_list_size = limit
        for block in blocks + blocks:
            assert _decode(caching, block) == _decode(plain, block)


def test_decoder_cache_hits_on_a_size_zero_table() -> None:
    """The case the cache is for: nginx's blocks, table at size 0."""
    server = hpack.Encoder()
    server.header_table_size = 0
    caching = _CachingDecoder(65536)
    first = server.encode([(b":status", b"200"), (b"server", b"nginx")])
    caching.decode(first, raw=True)
    block = server.encode([(b":status", b"200"), (b"server", b"nginx")])
    assert caching.decode(block, raw=True) == [(b":status", b"200"), (b"server", b"nginx")]
    assert block in caching._cache
    fields = caching.decode(block, raw=True)
    fields.append((b"x", b"y"))  # a caller's change must not reach the cache
    assert caching.decode(block, raw=True) == [(b":status", b"200"), (b"server", b"nginx")]


@pytest.mark.timeout(30)
def test_nginx_responses_with_changing_fields_over_one_connection(
    nginx_h2: Nginx, ssl_context: ssl.SSLContext
) -> None:
    """Responses whose fields differ from one to the next (and repeat) over
    one nginx connection: each caller gets its own response's fields."""
    with httpcore.Client(ssl=ssl_context) as client:
        for i in [1, 2, 1, 3, 2, 1] * 3:
            response = client.request("GET", nginx_h2.url(f"/echo-header?v={i}"))
            assert response.http_version == "HTTP/2"
            assert (b"x-echo", str(i).encode()) in response.headers
            assert response.read() == f"{i}\n".encode()
