# Runs on the engine thread only (and once at import). Owns every change this
# project makes to h2, hpack and hyperframe: nothing else reaches into them.
"""Where h2 needs help, in one place, each change checked at import.

Every patch below depends on internals of a library that may change between
the versions pyproject allows. Each is tried once at import against the
installed library, on a client and a stock h2 server talking in memory; a
patch whose check fails is left out and the stock behaviour stays
(``PATCHES`` says which are on; ``HTTPCORE_H2_STOCK=name,...`` or ``=all``
in the environment leaves patches out on purpose). What each one is for:

- ``repr``: h2 formats ``repr(frame)`` for a trace log on every frame it
  receives; hyperframe hex-encodes (and for DATA first copies) the payload
  for it. Same text, without the copies: 31% + 6% of the engine's time in
  the HTTP/2 download benchmark.
- ``hpack_cache``: reuse of header blocks that cannot have changed the HPACK
  table (see the coders' docstrings): a third of the engine's time on small
  responses.
- ``goaway``: h2 refuses every frame after a received GOAWAY
  (python-hyper/h2#1181), while RFC 9113 §6.8 lets streams at or below its
  last-stream-id complete.
- ``stream_walk``: h2 walks every stream on each ``send_headers``.
- ``events_before_error``: a connection error in one read keeps the events
  of the frames before it (a response completed in the same read is kept),
  ending with :class:`ConnectionFailed` instead of raising.
- ``stream_errors``: a wrong content-length is a stream error (RFC 9113
  §8.1.1), not a connection error: RST_STREAM(PROTOCOL_ERROR) for that
  stream and a :class:`StreamMalformed` event.
- ``idle_reset``: RST_STREAM on an idle stream is a connection error
  (RFC 9113 §5.1); h2 ignores it.
- ``fast_data``: DATA frames h2 would take without a question (an open
  stream that has its head, inside both windows and content-length, no
  padding) are taken in here, with the same changes to h2's state h2 would
  make: h2's per-frame parsing, state machines and events were 95% of the
  engine's time downloading from nginx's 8 KiB frames (330 MB/s). Every
  other frame, and any DATA frame with a question about it, goes to h2 in
  order; h2 stays the implementation of record and, in tests, the oracle.
- ``fast_headers``: a request head whose HPACK block is cached (the
  encoder's table cannot have changed) goes out as one HEADERS frame built
  here, and a response head whose block is cached (the decoder's table is
  empty, as nginx keeps it) is taken in without h2's frame parsing; both
  make the same state changes through h2's own stream state machines.
  h2's send_headers and HEADERS parsing were 40% of the engine's time on
  small HTTP/2 responses.
"""

from __future__ import annotations

import binascii
import logging
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import hpack.table
import hyperframe.exceptions
import hyperframe.frame
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState
from h2.errors import ErrorCodes
from h2.stream import StreamInputs, StreamState
from h2.utilities import authority_from_headers, extract_method_header

logger = logging.getLogger("httpcore")

HPACK_CACHE = 256
"""Header blocks remembered per connection and direction."""

PATCHES: dict[str, bool] = {}
"""Which patches passed their check at import and are in use."""


# -- events the patched connection adds ---------------------------------------------


class StreamMalformed(h2.events.Event):
    """A stream error h2 would have made a connection error: the stream is
    reset (PROTOCOL_ERROR); only its exchange fails."""

    def __init__(self, stream_id: int, reason: str, flow_controlled_length: int) -> None:
        self.stream_id = stream_id
        self.reason = reason
        self.flow_controlled_length = flow_controlled_length


class DataRun(h2.events.Event):
    """DATA frames of one stream, back to back in one read, taken in by the
    ``fast_data`` path: h2's DataReceived events for them, joined."""

    def __init__(self, stream_id: int, data: bytes, flow_controlled_length: int) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_controlled_length = flow_controlled_length


class ConnectionFailed(h2.events.Event):
    """The last event of a read that hit a connection error; GOAWAY is queued."""

    def __init__(self, error: h2.exceptions.ProtocolError) -> None:
        self.error = error


# -- hyperframe: reprs without copies -----------------------------------------------


def _cheap_raw_data_repr(data: bytes | None) -> str:
    """hyperframe's ``_raw_data_repr``, hex-encoding 11 bytes, not all."""
    if not data:
        return "None"
    r = binascii.hexlify(data[:11]).decode("ascii")
    if len(r) > 20:
        r = r[:20] + "..."
    return "<hex:" + r + ">"


_stock_raw_data_repr = getattr(hyperframe.frame, "_raw_data_repr", None)
_stock_data_body_repr = hyperframe.frame.DataFrame._body_repr


def _cheap_data_body_repr(self: hyperframe.frame.DataFrame) -> str:
    """A DATA frame's body repr without serializing (copying) the payload
    when there is no padding to add."""
    if "PADDED" in self.flags:
        return _stock_data_body_repr(self)
    return _cheap_raw_data_repr(self.data)


def _check_repr() -> bool:
    if not callable(_stock_raw_data_repr):
        return False
    if _stock_data_body_repr is not hyperframe.frame.Frame._body_repr:
        return False
    samples = [b"", b"a", b"0123456789", b"0123456789a", bytes(range(40))]
    if any(_cheap_raw_data_repr(s) != _stock_raw_data_repr(s) for s in samples):
        return False
    frame = hyperframe.frame.DataFrame(1, data=bytes(range(30)))
    return _cheap_data_body_repr(frame) == _stock_data_body_repr(frame)


def _install_repr() -> None:
    hyperframe.frame._raw_data_repr = _cheap_raw_data_repr
    hyperframe.frame.DataFrame._body_repr = _cheap_data_body_repr  # type: ignore[method-assign,assignment]


# -- hpack: caching coders --------------------------------------------------------------


_TABLE_SIZE = vars(hpack.table.HeaderTable).get("maxsize")


class _CountingTable(hpack.table.HeaderTable):
    """An HPACK table that counts its changes (entries added, size set), so
    a cached encoding can tell that the table is still the one it was made
    against."""

    generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        self.generation += 1
        assert isinstance(_TABLE_SIZE, property) and _TABLE_SIZE.fset is not None
        _TABLE_SIZE.fset(self, value)


class CachingEncoder(hpack.Encoder):
    """hpack's encoder, remembering header lists whose encoding did not
    change the table: encoding one again against the same table gives the
    same bytes, so they are reused. A client sends the same few request
    heads over and over; HPACK encoding was 8% of the engine's time with
    100 tasks on one connection. Never-indexed fields are never cached."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table: _CountingTable = _CountingTable()
        self._cache: dict[tuple[Any, ...], tuple[int, bytes]] = {}

    def cached(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The encoding of ``headers`` if it is remembered and still right."""
        table = self.header_table
        if table.resized or not _indexable(headers):
            return None
        hit = self._cache.get(tuple(headers))
        if hit is not None and hit[0] == table.generation:
            return hit[1]
        return None

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        if type(headers) is not list and not isinstance(headers, dict):
            headers = list(headers)  # h2 >= 4.2 passes a generator
        if not huffman or table.resized or type(headers) is not list or not _indexable(headers):
            return super().encode(headers, huffman)
        key = tuple(headers)
        hit = self._cache.get(key)
        generation = table.generation
        if hit is not None and hit[0] == generation:
            return hit[1]
        encoded = super().encode(headers, huffman)
        if table.generation == generation:
            if len(self._cache) >= HPACK_CACHE:
                self._cache.clear()
            self._cache[key] = (generation, encoded)
        return encoded


def _indexable(headers: list[Any]) -> bool:
    """Only (name, value) pairs hpack may index: a never-indexed field equals
    the plain pair as a key, so a list holding one is never cached nor
    looked up (h2 passes HeaderTuples, we pass plain tuples)."""
    for header in headers:
        kind = type(header)
        if (kind is not tuple and kind is not hpack.HeaderTuple) or len(header) != 2:
            return False
    return True


class CachingDecoder(hpack.Decoder):
    """hpack's decoder, remembering blocks decoded while the dynamic table
    was empty and that left it empty, at the same limits: decoding one again
    gives the same fields and the same table. Servers that keep their
    table at size 0 (nginx does) send such blocks only; HPACK decoding of
    nginx's Huffman-coded fields was about 25% of the engine's time."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self._cache: dict[bytes, tuple[tuple[int, int, int], list[Any], bool, int | None]] = {}

    def cached(self, data: memoryview) -> tuple[list[tuple[bytes, bytes]], bool, int | None] | None:
        """The fields of block ``data`` if it is remembered and decoding it
        again would give them and change nothing; whether they are a plain
        response head (:func:`_plain_response`) and its content-length,
        both worked out once."""
        table = self.header_table
        if table.dynamic_entries:
            return None
        hit = self._cache.get(bytes(data))
        state = (table.maxsize, self.max_allowed_table_size, self.max_header_list_size)
        if hit is not None and hit[0] == state:
            return list(hit[1]), hit[2], hit[3]
        return None

    def decode(self, data: bytes, raw: bool = False) -> Any:
        table = self.header_table
        if not raw or table.dynamic_entries:
            return super().decode(data, raw)
        key = bytes(data)
        state = (table.maxsize, self.max_allowed_table_size, self.max_header_list_size)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == state:
            return list(hit[1])
        fields = list(super().decode(data, raw))
        if not table.dynamic_entries and table.maxsize == state[0]:
            if len(self._cache) >= HPACK_CACHE:
                self._cache.clear()
            plain = _plain_response(fields)
            length = _content_length(fields) if plain else None
            self._cache[key] = (state, fields, plain, length)
        return list(fields)


def _check_hpack_cache() -> bool:
    if not isinstance(_TABLE_SIZE, property) or _TABLE_SIZE.fset is None:
        return False
    encoder, plain = CachingEncoder(), hpack.Encoder()
    table = encoder.header_table
    if not hasattr(table, "resized") or not hasattr(table, "dynamic_entries"):
        return False
    fields = [(b":method", b"GET"), (b"x-a", b"1")]
    for _ in range(2):
        if encoder.encode(list(fields)) != plain.encode(list(fields)):
            return False
    decoder = CachingDecoder(65536)
    if not hasattr(decoder, "max_allowed_table_size"):
        return False
    block = hpack.Encoder().encode([(b":status", b"200")])
    first, again = decoder.decode(block, raw=True), decoder.decode(block, raw=True)
    return bool(first == again == [(b":status", b"200")])


# -- h2: the connection ----------------------------------------------------------------


def _open_stays_open() -> bool:
    """Whether h2's connection state machine, open, takes a sent or a
    received HEADERS frame with no change and no side effect: then the fast
    paths need not ask it (its dict lookup hashes two Python enums)."""
    table = getattr(h2.connection.H2ConnectionStateMachine, "_transitions", None)
    if not isinstance(table, dict):
        return False
    same = (None, ConnectionState.CLIENT_OPEN)
    return all(
        table.get((ConnectionState.CLIENT_OPEN, what)) == same
        for what in (ConnectionInputs.SEND_HEADERS, ConnectionInputs.RECV_HEADERS)
    )


_OPEN_STAYS_OPEN = _open_stays_open()


class H2Connection(h2.connection.H2Connection):
    """h2's connection with the patches that passed their checks."""

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        if PATCHES.get("hpack_cache"):
            self.encoder = CachingEncoder()
            self.decoder = CachingDecoder(self.decoder.max_header_list_size)

    # goaway

    def _goaway_keep_open(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = h2.connection.H2Connection._receive_goaway_frame(self, frame)
        if state is not ConnectionState.CLOSED:
            self.state_machine.state = state
        return result

    # stream_walk

    _counts = 0

    def _open_outbound_streams_sometimes(self) -> int:
        """h2 reads this on every ``send_headers`` to enforce the server's
        stream limit and to prune closed streams. The limit is enforced
        before (``HTTP2Connection.capacity``), so the walk is done every 128th
        time only, to prune: 8% of the engine's time with 100 streams open
        (every 32nd, it was still 2%; 128 closed streams at most wait)."""
        self._counts += 1
        if self._counts % 128:
            return 0
        return self._open_streams(int(self.config.client_side))

    # events_before_error

    def _receive_keeping_events(self, data: Any) -> list[h2.events.Event]:
        events: list[h2.events.Event] = []
        self.incoming_buffer.add_data(data)
        self.incoming_buffer.max_frame_size = self.max_inbound_frame_size
        try:
            for frame in self.incoming_buffer:
                events.extend(self._receive_frame(frame))
        except h2.exceptions.ProtocolError as exc:
            self._goaway_quietly(_error_code(exc))
            events.append(ConnectionFailed(exc))
        except hyperframe.exceptions.HyperframeError as exc:  # InvalidPaddingError
            self._goaway_quietly(ErrorCodes.PROTOCOL_ERROR)
            error = h2.exceptions.ProtocolError(f"malformed frame: {exc}")
            error.__cause__ = exc
            events.append(ConnectionFailed(error))
        return events

    def _goaway_quietly(self, code: ErrorCodes) -> None:
        try:
            self._terminate_connection(code)
        except h2.exceptions.ProtocolError:
            pass

    # fast_headers

    _fast_headers = False

    def send_request(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        """``send_headers`` for a request on a new stream; a request head
        whose encoding is cached (``fast_headers``) goes out as one HEADERS
        frame made here, with h2's state changed as ``send_headers`` would."""
        encoder = self.encoder
        block = None
        if self._fast_headers and stream_id not in self.streams:
            block = encoder.cached(headers) if isinstance(encoder, CachingEncoder) else None
        if block is None or len(block) > self.max_outbound_frame_size:
            self.send_headers(stream_id, headers, end_stream=end_stream)
            return
        limit = self.remote_settings.max_concurrent_streams
        open_streams = self.open_outbound_streams
        if open_streams + 1 > limit:
            raise h2.exceptions.TooManyStreamsError(
                f"Max outbound streams is {limit}, {open_streams} open"
            )
        if self.state_machine.state is not ConnectionState.CLIENT_OPEN or not _OPEN_STAYS_OPEN:
            self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        stream = self._begin_new_stream(stream_id, AllowedStreamIDs.ODD)
        machine = stream.state_machine
        machine.process_input(StreamInputs.SEND_HEADERS)
        flags = 0x4  # END_HEADERS
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
            flags |= 0x1
        if stream._authority is None:
            stream._authority = authority_from_headers(headers)
        stream.request_method = extract_method_header(headers)
        size = len(block)
        self._data_to_send += _FRAME_HEADER.pack(size >> 16, size & 0xFFFF, 1, flags, stream_id)
        self._data_to_send += block

    def _take_head(
        self, block: memoryview, end_stream: bool, stream_id: int, batch: _Batch
    ) -> bool:
        """Take in a response head if its block is cached and h2 would take
        it without a question (a final status, a well-formed content-length,
        the first head of an open stream): h2's stream makes the state
        changes and the events. False leaves the frame to h2."""
        decoder = self.decoder
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or not isinstance(decoder, CachingDecoder)
            or self.state_machine.state is not ConnectionState.CLIENT_OPEN
            or self.incoming_buffer._headers_buffer
        ):
            return False
        machine = stream.state_machine
        if machine.state not in _RECEIVING or machine.headers_received:
            return False
        hit = decoder.cached(block)
        if hit is None or not hit[1]:
            return False
        fields, _, length = hit
        if not _OPEN_STAYS_OPEN:  # the state is CLIENT_OPEN (checked above)
            self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        config = self.config
        if (
            config.validate_inbound_headers
            or config.normalize_inbound_headers
            or isinstance(config.header_encoding, str)
        ):
            _, events = stream.receive_headers(fields, end_stream, config.header_encoding)
        else:
            events = _receive_plain_head(stream, fields, end_stream, length)
        batch.events.extend(events)
        return True

    # fast_data

    _partial = b""
    """The start of a frame the previous read ended inside."""

    _h2_only = False
    """Everything goes to h2 from now on: it holds part of an oversized frame."""

    def _receive_batch(self, data: Any) -> list[h2.events.Event]:
        """Whole frames for h2 (set at install: with or without
        ``events_before_error``)."""
        raise NotImplementedError

    def receive_prefix(self, data: memoryview) -> list[h2.events.Event]:
        """``receive_data`` for a view of the start of a bytearray
        (``data.obj``), as the engine's transport hands over every read: the
        block checks then slice the bytearray, several times faster than
        slicing the view."""
        base = data.obj
        if PATCHES.get("fast_data") and isinstance(base, (bytes, bytearray)):
            return self._receive_fast(data, base)
        return self.receive_data(data)

    def _receive_fast(
        self, data: Any, start_of: bytes | bytearray | None = None
    ) -> list[h2.events.Event]:
        """Split ``data`` into frames: DATA frames h2 would take without a
        question are taken in here (:meth:`_start_run`), every other frame
        goes to h2 whole and in order; a frame the read ends inside waits.
        ``start_of`` holds ``data`` at its start, for the block checks."""
        if self._h2_only:
            return self._receive_batch(data)
        view = memoryview(data)
        base: bytes | bytearray
        if start_of is not None:
            base = start_of
        elif isinstance(data, (bytes, bytearray)):
            base = data
        else:
            base = view.tobytes()  # not the engine's read (receive_prefix)
        batch = _Batch()
        if self._partial:
            size = len(view)
            frame, view = self._completed(view, batch)
            if frame is None:
                return batch.events
            batch.base = frame
            self._take_frames(memoryview(frame), batch)
            batch.offset = size - len(view)
        batch.base = base
        if not batch.failed:
            pos = self._take_frames(view, batch)
            self._end_run(batch)
            self._flush_slow(batch)
            if not batch.failed and pos < len(view):
                self._keep_partial(bytes(view[pos:]), batch)
        return batch.events

    def _completed(self, view: memoryview, batch: _Batch) -> tuple[bytes | None, memoryview]:
        """The frame the previous read ended inside, completed from ``view``
        (None while still incomplete), and the rest of ``view``."""
        partial = self._partial
        self._partial = b""
        if len(partial) < 9:
            take = 9 - len(partial)
            partial += view[:take]
            view = view[take:]
            if len(partial) < 9:
                self._partial = partial
                return None, view
        need = 9 + int.from_bytes(partial[:3], "big") - len(partial)
        if need > len(view):
            self._keep_partial(partial + view, batch)
            return None, view[len(view) :]
        return partial + view[:need], view[need:]

    def _keep_partial(self, rest: bytes, batch: _Batch) -> None:
        """Keep the start of a frame the read ended inside, unless h2 would
        refuse its header as soon as it arrives (DATA on stream 0, say):
        then it goes to h2 now, which fails the connection in this read."""
        if len(rest) >= 9 and _header_refused(rest[:9]):
            batch.slow.append(memoryview(rest))
            self._flush_slow(batch)
        elif len(rest) >= 9 and int.from_bytes(rest[:3], "big") > self.max_inbound_frame_size:
            # h2 buffers it (in linear time, unlike re-joining it here on
            # every read) and fails the connection once it is whole.
            self._h2_only = True
            batch.slow.append(memoryview(rest))
            self._flush_slow(batch)
        else:
            self._partial = rest

    def _take_frames(self, buf: memoryview, batch: _Batch) -> int:
        """Take the whole frames in ``buf``; returns where the rest starts.
        A DATA frame that continues the current run within its budget is
        only appended: the checks were made once for the run."""
        pos, end = 0, len(buf)
        unpack = _FRAME_HEADER.unpack_from
        while end - pos >= 9:
            high, low, kind, flags, stream_id = unpack(buf, pos)
            length = high << 16 | low
            stop = pos + 9 + length
            if stop > end:
                break
            if kind == 0 and stream_id == batch.run_id and not flags & 0x8:
                if not flags & 0x1:
                    after = self._extend_run(buf, pos, end, batch)
                    if after != pos:
                        pos = after
                        continue
                elif self._may_end_run(batch, length):
                    batch.add(buf[pos + 9 : stop])
                    self._end_run(batch, end_stream=True)
                    pos = stop
                    continue
            if kind == 0 and not flags & 0x8:  # DATA, not PADDED
                if not self._settle(batch):
                    return end
                end_stream = bool(flags & 0x1)
                if self._start_run(stream_id & 0x7FFFFFFF, length, end_stream, batch):
                    batch.add(buf[pos + 9 : stop])
                    if end_stream:
                        self._end_run(batch, end_stream=True)
                        pos = stop
                    else:
                        pos = self._extend_run(buf, stop, end, batch)
                    continue
            if kind == 1 and flags & 0x2C == 0x4 and self._fast_headers:
                # HEADERS with END_HEADERS, not PADDED nor PRIORITY
                if not self._settle(batch):
                    return end
                block = buf[pos + 9 : stop]
                if self._take_head(block, bool(flags & 0x1), stream_id & 0x7FFFFFFF, batch):
                    pos = stop
                    continue
            self._end_run(batch)
            batch.slow.append(buf[pos:stop])
            pos = stop
        return pos

    def _settle(self, batch: _Batch) -> bool:
        """Before a frame is taken in here: hand h2 the frames waiting for it
        and close the current run. False if the connection failed."""
        if batch.slow:
            self._flush_slow(batch)
            if batch.failed:
                return False
        self._end_run(batch)
        return True

    def _extend_run(self, buf: memoryview, pos: int, end: int, batch: _Batch) -> int:
        """Append the DATA frames from ``pos`` on that continue the run
        within its budget (not ending the stream); returns where they stop.
        The per-frame work of a download: a header unpack and a slice, the
        checks having been made once for the run; a block of frames with
        the same header (nginx sends runs of them) costs one check for all
        (:func:`_same_frames`) and one slice each."""
        unpack = _FRAME_HEADER.unpack_from
        run = batch.run
        run_id, frame_max = batch.run_id, batch.frame_max
        room = batch.budget
        blocks = True
        while end - pos >= 9:
            high, low, kind, flags, stream_id = unpack(buf, pos)
            length = high << 16 | low
            stop = pos + 9 + length
            if (
                stop > end
                or kind
                or flags & 0x9
                or stream_id != run_id
                or length > room
                or length > frame_max
            ):
                break
            if blocks and length:
                count = _same_frames(batch.base, batch.offset + pos, batch.offset + end,
                                     9 + length, room // length)
                if count > 1:
                    step = 9 + length
                    starts = range(pos + 9, pos + count * step, step)
                    run.extend([buf[at : at + length] for at in starts])
                    room -= count * length
                    pos += count * step
                    continue
                blocks = False  # one check without a block per call at most
            run.append(buf[pos + 9 : stop])
            room -= length
            pos = stop
        batch.taken += batch.budget - room
        batch.budget = room
        return pos

    def _may_end_run(self, batch: _Batch, length: int) -> bool:
        """A last frame of ``length`` ends the run's stream as h2 would take
        it: within the budget and the frame size, and the body then as long
        as its content-length says."""
        if length > batch.budget or length > batch.frame_max:
            return False
        expected = batch.stream._expected_content_length
        received = batch.stream._actual_content_length + batch.taken + length
        return expected is None or received == expected

    def _start_run(self, stream_id: int, length: int, end_stream: bool, batch: _Batch) -> bool:
        """Start a run of DATA frames for ``stream_id`` if h2 would take its
        first frame (``length`` bytes) without a question: the stream is
        open for receiving and has its head, and the frame is within the
        frame size limit, both windows and the content-length. The run's
        budget is what all of them leave; False leaves the frame to h2."""
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or self.state_machine.state is not ConnectionState.CLIENT_OPEN
            or self.incoming_buffer._headers_buffer
        ):
            return False
        machine = stream.state_machine
        if machine.state not in _RECEIVING or not machine.headers_received:
            return False
        budget = min(
            self._inbound_flow_control_window_manager.current_window_size,
            stream._inbound_window_manager.current_window_size,
        )
        expected = stream._expected_content_length
        if expected is not None:
            left = expected - stream._actual_content_length
            if end_stream and length != left:
                return False  # a wrong content-length: h2 says so
            budget = min(budget, left)
        if length > budget or length > self.max_inbound_frame_size:
            return False
        batch.run_id = stream_id
        batch.stream = stream
        batch.budget = budget
        batch.frame_max = self.max_inbound_frame_size
        return True

    def _end_run(self, batch: _Batch, end_stream: bool = False) -> None:
        """Make the run's changes to h2's state, as h2 would have frame by
        frame, and add its DataRun (and StreamEnded) event."""
        stream = batch.stream
        if stream is None:
            return
        run, taken = batch.run, batch.taken
        self._inbound_flow_control_window_manager.window_consumed(taken)
        stream._inbound_window_manager.window_consumed(taken)
        stream._actual_content_length += taken
        data = bytes(run[0]) if len(run) == 1 else b"".join(run)
        batch.events.append(DataRun(batch.run_id, data, taken))
        if end_stream:
            batch.events.extend(stream.state_machine.process_input(StreamInputs.RECV_END_STREAM))
        batch.reset_run()

    def _flush_slow(self, batch: _Batch) -> None:
        if batch.slow:
            data = b"".join(batch.slow)
            batch.slow = []
            events = self._receive_batch(data)
            batch.events.extend(events)
            batch.failed = bool(events) and type(events[-1]) is ConnectionFailed

    # stream_errors

    def _receive_frame_with_stream_errors(self, frame: Any) -> list[h2.events.Event]:
        try:
            return h2.connection.H2Connection._receive_frame(self, frame)
        except h2.exceptions.ProtocolError as exc:
            if not _is_stream_error(exc) or frame.stream_id not in self.streams:
                raise
            flow = frame.flow_controlled_length if frame.type == 0 else 0
            try:
                self.reset_stream(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            except h2.exceptions.ProtocolError:
                pass  # closed both ways already: nothing to reset
            return [StreamMalformed(frame.stream_id, str(exc), flow)]

    # idle_reset

    def _receive_rst_checking_idle(self, frame: Any) -> Any:
        sid = frame.stream_id
        if sid not in self.streams and (sid % 2 == 0 or sid > self.highest_outbound_stream_id):
            raise h2.exceptions.ProtocolError(f"RST_STREAM on idle stream {sid}")
        return h2.connection.H2Connection._receive_rst_stream_frame(self, frame)


_FRAME_HEADER = struct.Struct(">BHBBL")
"""A frame header: length (high byte, low 16 bits), type, flags, stream id."""

_BLOCK = 128
"""Most frames one call of _same_frames takes (1 MiB of 8 KiB frames)."""

_ROWS = 9
"""Frames _same_frames compares one by one before it compares columns."""

_COLUMNS = (8, 4, 2, 1, 0, 3, 7, 6, 5)
"""Header bytes in the order _same_frames compares them: stream id (low
byte), flags, length (low to high), type, the rest of the stream id."""

_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
"""Stream states in which a client takes DATA."""


def _same_frames(base: bytes | bytearray, pos: int, end: int, step: int, most: int) -> int:
    """How many whole frames from ``pos`` on (``step`` bytes each, at most
    ``most``) have the same 9-byte header as the first, one after another
    (at least 1). The first _ROWS are compared one by one, enough for the
    runs of an interleaved read (nginx sends 8 frames of a stream at a
    time); a longer block is compared a column of header bytes at a time
    through extended slices of ``base``, at C speed. A column's leading run
    of the first frame's byte says where the block ends (the END_STREAM
    frame of a body, the next stream's frames); the stream id's low byte
    and the flags, which end most blocks, go first, so the other columns
    are cut to the block found."""
    count = min((end - pos) // step, most, _BLOCK)
    header = base[pos : pos + 9]
    same, at = 1, pos + step
    rows = min(count, _ROWS)
    while same < rows and base[at : at + 9] == header:
        same += 1
        at += step
    if same < rows or same == count:
        return same
    left = count - same
    for column in _COLUMNS:
        start = at + column
        tail = base[start : start + (left - 1) * step + 1 : step]
        left -= len(tail.lstrip(header[column : column + 1]))
        if not left:
            break
    return same + left


def _header_refused(header: bytes) -> bool:
    """h2 fails a connection on this frame header before its payload
    arrives (its frame buffer parses headers with hyperframe at once)."""
    try:
        hyperframe.frame.Frame.parse_frame_header(memoryview(header))
    except (hyperframe.exceptions.InvalidDataError, hyperframe.exceptions.InvalidFrameError):
        return True
    return False


def _plain_response(fields: Sequence[tuple[bytes, bytes]]) -> bool:
    """A final status first and content-length, if any, digits that agree:
    a head h2's stream takes without raising."""
    if not fields or fields[0][0] != b":status":
        return False
    status = fields[0][1]
    if len(status) != 3 or not status.isdigit() or status[:1] == b"1":
        return False
    length = None
    for name, value in fields:
        if name == b"content-length":
            if not value.isdigit() or (length is not None and value != length):
                return False
            length = value
    return True


def _content_length(fields: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The content-length of a plain head (its values agree)."""
    for name, value in fields:
        if name == b"content-length":
            return int(value)
    return None


def _receive_plain_head(
    stream: Any, fields: list[tuple[bytes, bytes]], end_stream: bool, length: int | None
) -> list[h2.events.Event]:
    """``H2Stream.receive_headers`` for a plain final response head (see
    :func:`_plain_response`) on a connection that neither validates nor
    normalizes inbound fields: the same state changes and events, without
    the steps that find nothing to do then (the informational check, the
    validation flags, the content-length scan). Those were 8% of the
    engine's time on small HTTP/2 responses."""
    machine = stream.state_machine
    events: list[Any] = machine.process_input(StreamInputs.RECV_HEADERS)
    if end_stream:
        ended = machine.process_input(StreamInputs.RECV_END_STREAM)
        events[0].stream_ended = ended[0]
        events += ended
    stream._expected_content_length = 0 if stream.request_method == b"HEAD" else length
    events[0].headers = fields
    return events


class _Batch:
    """What one read gave, in order: events, the current run of one stream's
    DATA payloads (views, valid during the read only) and whole frames not
    yet handed to h2. At most one of ``run`` and ``slow`` is non-empty."""

    __slots__ = (
        "base",
        "budget",
        "events",
        "failed",
        "frame_max",
        "offset",
        "run",
        "run_id",
        "slow",
        "stream",
        "taken",
    )

    def __init__(self) -> None:
        self.events: list[h2.events.Event] = []
        self.slow: list[memoryview] = []
        self.failed = False
        self.base: bytes | bytearray = b""
        """The bytes the frames being taken are in, for _same_frames..."""
        self.offset = 0
        """...and where the view being taken starts in them."""
        self.reset_run()

    def add(self, payload: memoryview) -> None:
        """One frame's payload into the run (its checks already made)."""
        self.run.append(payload)
        self.budget -= len(payload)
        self.taken += len(payload)

    def reset_run(self) -> None:
        self.run: list[memoryview] = []
        self.run_id = -1
        self.stream: Any = None
        self.budget = 0
        """DATA bytes the run may still take without a question."""
        self.frame_max = 0
        self.taken = 0


def _error_code(exc: h2.exceptions.ProtocolError) -> ErrorCodes:
    """The GOAWAY code RFC 9113 names for ``exc``, where h2 says only
    PROTOCOL_ERROR: a header block HPACK cannot decode is a COMPRESSION_ERROR
    (§4.3), a SETTINGS ack with a payload a FRAME_SIZE_ERROR (§6.5)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, hpack.HPACKError):
        return ErrorCodes.COMPRESSION_ERROR
    if isinstance(cause, hyperframe.exceptions.InvalidDataError) and str(cause).startswith(
        "SETTINGS ack frame must not have payload"
    ):
        return ErrorCodes.FRAME_SIZE_ERROR
    code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
    return code if isinstance(code, ErrorCodes) else ErrorCodes.PROTOCOL_ERROR


def _is_stream_error(exc: Exception) -> bool:
    """Errors RFC 9113 §8.1.1 makes stream errors: the body does not match
    content-length, or content-length itself is malformed."""
    if isinstance(exc, h2.exceptions.InvalidBodyLengthError):
        return True
    text = str(exc)
    return text.startswith(("Invalid content-length", "Conflicting content-length"))


_PATCHED_METHODS: dict[str, tuple[str, Callable[..., Any]]] = {
    "goaway": ("_receive_goaway_frame", H2Connection._goaway_keep_open),
    "events_before_error": ("receive_data", H2Connection._receive_keeping_events),
    "stream_errors": ("_receive_frame", H2Connection._receive_frame_with_stream_errors),
    "idle_reset": ("_receive_rst_stream_frame", H2Connection._receive_rst_checking_idle),
    "fast_data": ("receive_data", H2Connection._receive_fast),
}


# -- checks: a client and a stock server in memory ----------------------------------


def _pair(engine_like: bool = False) -> tuple[H2Connection, h2.connection.H2Connection]:
    """A client and a server, connected. ``engine_like``: the client checks
    inbound fields as the engine's does (not at all: ``check_fields`` does)."""
    checks = not engine_like
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_inbound_headers=checks,
        normalize_inbound_headers=checks,
    )
    client = H2Connection(config)
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _request(client: H2Connection, server: h2.connection.H2Connection) -> int:
    sid = client.get_next_available_stream_id()
    headers = [(b":method", b"GET"), (b":authority", b"a"), (b":scheme", b"http"), (b":path", b"/")]
    client.send_headers(sid, headers, end_stream=True)
    server.receive_data(client.data_to_send())
    return sid


def _check_goaway() -> bool:
    client, server = _pair()
    sid = _request(client, server)
    frame = hyperframe.frame.GoAwayFrame(0)
    frame.last_stream_id = sid
    server.send_headers(sid, [(b":status", b"200")])
    head = server.data_to_send()
    server.send_data(sid, b"x", end_stream=True)
    events = client.receive_data(head + frame.serialize() + server.data_to_send())
    return any(isinstance(e, h2.events.StreamEnded) for e in events)


def _check_stream_walk() -> bool:
    client, server = _pair()
    _request(client, server)
    return client._open_streams(1) == 1


def _check_events_before_error() -> bool:
    client, server = _pair()
    sid = _request(client, server)
    server.send_headers(sid, [(b":status", b"200")], end_stream=True)
    bad = hyperframe.frame.WindowUpdateFrame(0)
    bad.window_increment = 1
    data = server.data_to_send() + bad.serialize()[:-4] + b"\x00\x00\x00\x00"
    events = client.receive_data(data)
    ended = any(isinstance(e, h2.events.StreamEnded) for e in events)
    return ended and isinstance(events[-1], ConnectionFailed) and b"" != client.data_to_send()


def _check_stream_errors() -> bool:
    client, server = _pair()
    sid = _request(client, server)
    other = _request(client, server)
    server.send_headers(sid, [(b":status", b"200"), (b"content-length", b"3")])
    server.send_data(sid, b"x", end_stream=True)
    server.send_headers(other, [(b":status", b"200")], end_stream=True)
    events = client.receive_data(server.data_to_send())
    bad = [e for e in events if isinstance(e, StreamMalformed)]
    good = [e for e in events if isinstance(e, h2.events.StreamEnded)]
    return (
        len(bad) == 1
        and bad[0].stream_id == sid
        and [e.stream_id for e in good] == [other]
        and (sid, ErrorCodes.PROTOCOL_ERROR) in _resets(client.data_to_send())
    )


def _resets(data: bytes) -> list[tuple[int, int]]:
    """(stream id, error code) of each RST_STREAM frame in ``data``."""
    out = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = hyperframe.frame.Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        if isinstance(frame, hyperframe.frame.RstStreamFrame):
            out.append((frame.stream_id, frame.error_code))
        view = view[9 + length :]
    return out


def _check_idle_reset() -> bool:
    client, server = _pair()
    _request(client, server)
    frame = hyperframe.frame.RstStreamFrame(99)
    frame.error_code = 0
    try:
        events = client.receive_data(frame.serialize())
    except h2.exceptions.ProtocolError:
        return True
    return bool(events) and isinstance(events[-1], ConnectionFailed)


def summary(events: list[h2.events.Event]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples, a stream's back-to-back data joined:
    how tests compare the ``fast_data`` path with h2's (its granularity of
    data events differs; nothing else may)."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, (h2.events.DataReceived, DataRun)):
            data = bytes(event.data or b"")
            flow = event.flow_controlled_length or 0
            if out and out[-1][0] == "data" and out[-1][1] == event.stream_id:
                _, _, before, before_flow = out.pop()
                data, flow = before + data, before_flow + flow
            out.append(("data", event.stream_id, data, flow))
        elif isinstance(event, ConnectionFailed):
            out.append(("failed", type(event.error).__name__))
        else:
            fields = vars(event)
            keep = {k: fields[k] for k in sorted(fields) if k not in ("stream_ended", "data")}
            out.append((type(event).__name__, repr(keep)))
    return out


def state(conn: h2.connection.H2Connection) -> list[Any]:
    """What the ``fast_data`` path changes in h2, for comparing with h2's own."""
    out: list[Any] = [
        conn.state_machine.state,
        conn._inbound_flow_control_window_manager.current_window_size,
    ]
    for sid, stream in sorted(conn.streams.items()):
        out.append(
            (
                sid,
                stream.state_machine.state,
                stream.state_machine.stream_closed_by,
                stream._inbound_window_manager.current_window_size,
                stream._actual_content_length,
                stream._expected_content_length,
            )
        )
    return out


def _check_fast_data() -> bool:
    fast, server = _pair()
    oracle, other = _pair()
    for client, peer in ((fast, server), (oracle, other)):
        ids = [_request(client, peer) for _ in range(3)]
    a, b, c = ids
    for peer in (server, other):
        peer.send_headers(a, [(b":status", b"200")])
        peer.send_headers(b, [(b":status", b"200"), (b"content-length", b"10")])
        peer.send_data(a, b"x" * 100)
        peer.send_headers(c, [(b":status", b"200")])
        peer.send_data(c, b"")
        peer.send_data(b, b"y" * 4)
        peer.send_data(a, bytes(range(256)) * 20)
        peer.send_data(b, b"z" * 6, end_stream=True, pad_length=3)
        peer.send_data(c, b"w" * 9)
        peer.send_headers(c, [(b"x-t", b"1")], end_stream=True)
        peer.send_data(a, b"v", end_stream=True)
    wire, expected = server.data_to_send(), other.data_to_send()
    if wire != expected:
        return False
    events: list[h2.events.Event] = []
    for i in range(0, len(wire), 7):
        events += fast.receive_data(wire[i : i + 7])
    want = oracle._receive_batch(expected)
    return summary(events) == summary(want) and state(fast) == state(oracle)


def _check_fast_headers() -> bool:
    fast, server = _pair(engine_like=True)
    oracle, other = _pair(engine_like=True)
    oracle._fast_headers = False
    head = [(b":method", b"GET"), (b":authority", b"a"), (b":scheme", b"http"), (b":path", b"/")]
    secret = [*head, hpack.NeverIndexedHeaderTuple(b"authorization", b"k")]
    slow: list[int] = []  # heads h2 encodes: a first, a second (cached then), the secret
    stock_send = fast.send_headers

    def counted_send(*args: Any, **kwargs: Any) -> None:
        slow.append(1)
        stock_send(*args, **kwargs)

    fast.send_headers = counted_send  # type: ignore[method-assign]
    heads = ((head, True), (head, True), (head, False), (secret, True), (head, True))
    for client in (fast, oracle):
        for fields, end in heads:
            client.send_request(client.get_next_available_stream_id(), list(fields), end)
    sent = fast.data_to_send()
    if sent != oracle.data_to_send() or state(fast) != state(oracle) or len(slow) != 3:
        return False
    taken: list[bytes] = []
    stock_batch = fast._receive_batch

    def counted_batch(data: Any) -> list[h2.events.Event]:
        taken.append(bytes(data))
        return stock_batch(data)

    fast._receive_batch = counted_batch  # type: ignore[method-assign]
    server.receive_data(sent)
    other.receive_data(sent)
    events: list[h2.events.Event] = []
    want: list[h2.events.Event] = []
    for peer in (server, other):
        peer.encoder.header_table_size = 0  # as nginx: nothing indexed
        for sid in (1, 3, 5, 7, 9):
            fields = [(b":status", b"200"), (b"content-length", b"0" if sid != 5 else b"2")]
            peer.send_headers(sid, fields, end_stream=sid != 5)
        peer.send_headers(5, [(b"x-t", b"1")], end_stream=True)
    events += fast.receive_data(server.data_to_send())
    want += oracle._receive_batch(other.data_to_send())
    # to h2: the heads of streams 1 (a table size update), 3 (cached then),
    # 5 (another block) and 5's trailers; 7 and 9 are taken in here
    return summary(events) == summary(want) and state(fast) == state(oracle) and len(taken) == 4


_CHECKS: dict[str, Callable[[], bool]] = {
    "goaway": _check_goaway,
    "stream_walk": _check_stream_walk,
    "events_before_error": _check_events_before_error,
    "stream_errors": _check_stream_errors,
    "idle_reset": _check_idle_reset,
    "fast_data": _check_fast_data,
    "fast_headers": _check_fast_headers,
}


_STOCK = {n.strip() for n in os.environ.get("HTTPCORE_H2_STOCK", "").split(",") if n.strip()}


def _try(name: str, check: Callable[[], bool]) -> bool:
    if name in _STOCK or "all" in _STOCK:
        return False
    try:
        ok = bool(check())
    except Exception:
        ok = False
    if not ok:
        logger.warning("httpcore: h2 patch %r left out: its check failed on this h2", name)
    return ok


def _install() -> None:
    """Each patch on its own: installed, checked, and removed if its check fails."""
    PATCHES["repr"] = _try("repr", _check_repr)
    if PATCHES["repr"]:
        _install_repr()
    PATCHES["hpack_cache"] = True
    PATCHES["hpack_cache"] = _try("hpack_cache", _check_hpack_cache)
    for name, check in _CHECKS.items():
        if name == "stream_walk":
            walk = property(H2Connection._open_outbound_streams_sometimes)
            setattr(H2Connection, "open_outbound_streams", walk)  # noqa: B010
        elif name == "fast_headers":
            if not (PATCHES["hpack_cache"] and PATCHES["fast_data"]):
                PATCHES[name] = False  # it reads their caches and frames
                continue
            H2Connection._fast_headers = True
        else:
            method, impl = _PATCHED_METHODS[name]
            setattr(H2Connection, method, impl)
        if name == "fast_data":
            # the path h2's frames take, with or without events_before_error
            whole: Callable[..., list[h2.events.Event]] = h2.connection.H2Connection.receive_data
            if PATCHES["events_before_error"]:
                whole = H2Connection._receive_keeping_events
            H2Connection._receive_batch = whole  # type: ignore[method-assign]
        PATCHES[name] = _try(name, check)
        if not PATCHES[name]:
            if name == "fast_headers":
                H2Connection._fast_headers = False
            elif name == "stream_walk":
                delattr(H2Connection, "open_outbound_streams")
            elif name == "fast_data" and PATCHES["events_before_error"]:
                setattr(H2Connection, method, H2Connection._receive_keeping_events)
            else:
                delattr(H2Connection, _PATCHED_METHODS[name][0])


_install()
