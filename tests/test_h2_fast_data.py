"""``engine/h2compat.py``'s ``fast_data`` path, with h2 as the oracle.

The patched client (``H2Connection.receive_data``) splits what it reads into
frames and takes DATA frames h2 would accept without a question in itself;
``H2Connection._receive_batch`` on another instance of the same class is h2
(with the project's other patches) taking every frame: the oracle. Both are
fed the same bytes and must agree: ``h2compat.summary`` of every event so
far (a stream's back-to-back data is joined there: the granularity of data
events may differ, nothing else), ``h2compat.state`` (windows, stream states,
content-length counters) and the bytes each wants to send (SETTINGS and PING
acks, RST_STREAM, WINDOW_UPDATE, GOAWAY). A connection error must hit both
in the same read.

- ``test_fast_data_state_machine``: Hypothesis drives two clients (fast,
  oracle) and two stock h2 servers given the same actions (their output is
  checked byte for byte): requests with and without bodies, response heads
  (1xx, right, wrong and malformed content-lengths), DATA of any size up to
  the windows (padded or not, END_STREAM or not), trailers, RST_STREAM,
  pushes, PING, SETTINGS, WINDOW_UPDATE, GOAWAY, plus raw frames no stock
  server sends (DATA on idle, closed and head-less streams, past a window,
  larger than the frame size, on stream 0, with bad padding, undefined flags
  or the reserved bit; HEADERS cut off from its CONTINUATION...). What the
  servers send is delivered in prefixes of any length, each cut into reads
  differently for the two clients (often inside a frame header). Once a
  connection error is delivered, nothing more is.
  ``HTTPCORE_H2_FAST_EXAMPLES`` / ``HTTPCORE_H2_FAST_STEPS`` run it longer
  (defaults 150 examples of up to 40 steps; derandomized, so CI is stable).
- examples that pin behaviours: a 1 MiB body in 8 KiB and in maximum-size
  frames, wrong content-lengths, a short body ending exactly at the window,
  DATA past the connection window, a frame cut across three reads inside
  its header, one DataRun for a run and its END_STREAM frame, a frame header
  h2 refuses before its payload, an oversized frame trickling in, blocks of
  same-size frames, and frames with a question about them one by one
  (``CASES``), in one read, a read per frame and reads cut in every header.
"""

from __future__ import annotations

import importlib
import itertools
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
import pytest
from h2.stream import StreamState
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from httpcore.engine import h2compat
from httpcore.engine.http2 import client_h2

EXAMPLES = int(os.environ.get("HTTPCORE_H2_FAST_EXAMPLES", "150"))
STEPS = int(os.environ.get("HTTPCORE_H2_FAST_STEPS", "40"))

Client = h2compat.H2Connection
Server = h2.connection.H2Connection
Event = h2.events.Event
Codes = h2.errors.ErrorCodes
Setting = h2.settings.SettingCodes

REQUEST = [(b":method", b"GET"), (b":authority", b"a"), (b":scheme", b"http"), (b":path", b"/")]
UPLOAD = [(b":method", b"POST"), (b":authority", b"a"), (b":scheme", b"http"), (b":path", b"/u")]
PATTERN = bytes(range(251)) * 90
"""Body bytes (a prime period, so misplaced bytes show): about 22 KB."""

STATUS_200 = b"\x88"
"""HPACK for ``:status: 200`` (static table entry 8): a header block for raw
HEADERS frames that leaves both sides' HPACK tables alone."""

DATA, HEADERS, RST_STREAM, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 8, 9
END_STREAM, END_HEADERS, PADDED = 0x1, 0x4, 0x8

MOST_DATA = 150_000
"""Bytes one rule sends at most (windows can grow to 2 GiB)."""

NEVER_OPENED = 2**31 - 1
"""A stream id no rule opens (the machine opens a few streams only)."""

SERVER_SENDING = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE, StreamState.RESERVED_LOCAL)
CLIENT_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
CLIENT_SENDING = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
OPEN_STATES = (*CLIENT_RECEIVING, StreamState.HALF_CLOSED_REMOTE, StreamState.RESERVED_REMOTE)


def body(offset: int, size: int) -> bytes:
    start = offset % 251
    out = PATTERN[start : start + size]
    while len(out) < size:
        out += PATTERN[: size - len(out)]
    return out


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A frame with any header, legal or not (hyperframe's classes refuse
    some: flags they do not define, the reserved bit)."""
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


def data_frame(stream_id: int, payload: bytes, end_stream: bool = False) -> bytes:
    f = hyperframe.frame.DataFrame(stream_id, data=payload)
    if end_stream:
        f.flags.add("END_STREAM")
    return bytes(f.serialize())


def frames_of(data: bytes) -> Iterator[hyperframe.frame.Frame]:
    view = memoryview(data)
    while len(view) >= 9:
        f, length = hyperframe.frame.Frame.parse_frame_header(view[:9])
        f.parse_body(view[9 : 9 + length])
        yield f
        view = view[9 + length :]


def goaway_codes(data: bytes) -> list[int]:
    return [f.error_code for f in frames_of(data) if isinstance(f, hyperframe.frame.GoAwayFrame)]


def resets(data: bytes) -> list[tuple[int, int]]:
    return [
        (f.stream_id, f.error_code)
        for f in frames_of(data)
        if isinstance(f, hyperframe.frame.RstStreamFrame)
    ]


def failed(events: list[Event]) -> bool:
    return any(isinstance(e, h2compat.ConnectionFailed) for e in events)


def feed(receive: Callable[[bytes], list[Event]], data: bytes, cuts: list[int]) -> list[Event]:
    """``data`` to ``receive`` in reads cut at ``cuts``; none after a read
    that ended in a connection error (as the engine does)."""
    events: list[Event] = []
    bounds = [0, *cuts, len(data)]
    for start, stop in itertools.pairwise(bounds):
        got = receive(data[start:stop])
        events += got
        if failed(got):
            break
    return events


def engine_reads(client: Client) -> Callable[[bytes], list[Event]]:
    """``client``'s reads as the engine's transport hands them over: a view
    of the start of one reused bytearray, the bytes of earlier reads after
    it, through ``receive_prefix`` (whose block checks slice the bytearray:
    a wrong offset or a check past the view would be caught here)."""
    buffer = bytearray()

    def receive(data: bytes) -> list[Event]:
        nonlocal buffer
        if len(data) > len(buffer):
            # A new one: a view may outlive the call in an error's traceback.
            buffer = buffer + bytes(len(data) - len(buffer))
        buffer[: len(data)] = data
        view = memoryview(buffer)[: len(data)]
        try:
            return client.receive_prefix(view)
        finally:
            view.release()

    return receive


def make_pair(engine_like: bool = False) -> tuple[Client, Server]:
    """``h2compat._pair()``, or a client made as the engine makes its own
    (``client_h2``), with windows small enough to run out in a test."""
    if not engine_like:
        return h2compat._pair()
    client = client_h2(stream_window=100_000, connection_window=200_000)
    server = Server(h2.config.H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def two_pairs(engine_like: bool = False) -> tuple[Client, Server, Client, Server]:
    fast, fast_server = make_pair(engine_like)
    oracle, oracle_server = make_pair(engine_like)
    return fast, fast_server, oracle, oracle_server


def two_streams(send: Callable[[Server, int, int], None]) -> tuple[Client, Client, bytes, int]:
    """A fast and an oracle client (engine-like), each with streams 1 and 3
    open and answered, and their one wire: the two heads, then what
    ``send(server, 1, 3)`` has each server send. Returns both clients, the
    wire and where the heads end in it."""
    fast, fast_server, oracle, oracle_server = two_pairs(engine_like=True)
    wires = []
    for client, server in ((fast, fast_server), (oracle, oracle_server)):
        a = h2compat._request(client, server)
        b = h2compat._request(client, server)
        assert (a, b) == (1, 3)
        for sid in (a, b):
            server.send_headers(sid, [(b":status", b"200")])
        head = server.data_to_send()
        send(server, a, b)
        wires.append(head + server.data_to_send())
    assert wires[0] == wires[1]
    return fast, oracle, wires[0], len(head)


def require_fast_data() -> None:
    """With the patch left out (its check failed at import), both clients
    would be h2 and every comparison here would hold for nothing."""
    assert h2compat.PATCHES.get("fast_data"), h2compat.PATCHES
    assert Client.receive_data is Client._receive_fast


# -- the state machine ---------------------------------------------------------------


SIZES = st.one_of(
    st.integers(0, 20000),
    st.sampled_from([0, 1, 16383, 16384, 16385, 32768]),
    st.sampled_from(["window", "window", "rest", "rest"]),
)
"""DATA to send: bytes, all the window allows, or what content-length has left."""

CONTENT_LENGTHS = st.one_of(
    st.none(),
    st.sampled_from([0, 5, 100, 16384, 65535, 65536, 70000, 100_001, 1 << 20]),
    st.integers(0, 200_000),
).map(lambda n: None if n is None else [b"%d" % n]) | st.sampled_from(
    [[b"abc"], [b"-1"], [b"5", b"6"], [b"5", b"5"], [b""]]
)
"""content-length fields: none, one, or ones h2 calls malformed."""

RAW_KINDS = [
    # h2 would take these without a question: the fast path's
    *["data"] * 4,  # within windows and content-length on a stream with a head
    *["data_flags"] * 2,  # the same with flag bits DATA does not define, END_STREAM sometimes
    "reserved_bit",  # the same with the stream id's reserved bit set
    "zero_end",  # an empty DATA with END_STREAM
    # legal, for h2
    *["padded"] * 2,  # PADDED DATA
    "continuation",  # HEADERS + CONTINUATION, then DATA
    *["unknown"] * 2,  # a frame type nobody defined
    "goaway",  # GOAWAY naming every stream, the connection kept
    "window_update",  # WINDOW_UPDATE for the client's sending
    "closed",  # DATA on a closed stream (a stream error if it was reset)
]
"""Frames no stock server sends that leave the connection up (mostly)."""

FATAL_KINDS = [
    "bad_padding",  # padding longer than the payload
    "idle",  # DATA on a stream never opened
    *["headless"] * 2,  # DATA before the stream's HEADERS
    *["oversize"] * 2,  # DATA larger than SETTINGS_MAX_FRAME_SIZE (after a run, sometimes)
    *["over_window"] * 3,  # DATA past the smaller of the two windows
    *["stream0"] * 2,  # DATA on stream 0: a header h2 refuses before the payload
    "settings1",  # SETTINGS on stream 1: the same
    *["split_headers"] * 2,  # HEADERS without END_HEADERS, then DATA (on any stream)
    "rst_idle",  # RST_STREAM on an idle stream
    "second_head",  # a final head again, without END_STREAM
]
"""Frames that are connection errors."""


class FastDataMachine(RuleBasedStateMachine):
    """Two clients (fast, oracle), two stock h2 servers, one wire each way.

    An example ends its connection (a frame that is a connection error, a
    GOAWAY) only from a step drawn at its start on, so that examples live
    long enough to move data, and some never end it."""

    def __init__(self) -> None:
        super().__init__()
        self.wire = bytearray()
        """Servers to clients, not yet delivered (the same for both clients)."""
        self.starts: list[int] = []
        """Where the frames in ``wire`` start (reads are often cut near them)."""
        self.upstream = bytearray()
        """Clients to servers, not yet delivered (checked the same for both)."""
        self.failed = False
        self.steps = 0
        self.fatal_from = 0
        self.events: tuple[list[Event], list[Event]] = ([], [])
        self.requests: list[int] = []
        self.declared: dict[int, int | None] = {}
        """Stream id: the content-length the server sent (None: none or not a number)."""
        self.sent: dict[int, int] = {}
        """Stream id: body bytes the server sent after its final head."""
        self.unacked: dict[int, int] = {}
        """Stream id: flow-controlled bytes received and not yet acknowledged."""

    @initialize(
        engine_like=st.booleans(),
        nginx_like=st.booleans(),
        gets=st.integers(1, 3),
        posts=st.integers(0, 1),
        fatal_from=st.integers(0, 60),
    )
    def connect(
        self, engine_like: bool, nginx_like: bool, gets: int, posts: int, fatal_from: int
    ) -> None:
        """Two connections; ``nginx_like`` servers keep their HPACK table
        empty (as nginx does), so the fast client also takes response heads
        in itself (``fast_headers``, where present)."""
        require_fast_data()
        self.fast, self.fast_server, self.oracle, self.oracle_server = two_pairs(engine_like)
        self.oracle._fast_headers = False  # h2's send_headers for requests, too
        self.engine_reads = engine_reads(self.fast)
        self.clients = (self.fast, self.oracle)
        self.servers = (self.fast_server, self.oracle_server)
        self.fatal_from = fatal_from
        if nginx_like:
            for server in self.servers:
                server.encoder.header_table_size = 0
        for upload in [False] * gets + [True] * posts:
            self.request(upload)

    def fatal_allowed(self) -> bool:
        return self.steps >= self.fatal_from

    # -- doing the same on both sides ----------------------------------------------

    @staticmethod
    def _same(pair: tuple[Any, Any], action: Callable[[Any], object]) -> bool:
        """``action`` on both; h2's refusals (ProtocolError) must match.
        True when it was done."""
        outcomes: list[str | None] = []
        for conn in pair:
            try:
                action(conn)
                outcomes.append(None)
            except h2.exceptions.ProtocolError as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes[0] == outcomes[1], outcomes
        return outcomes[0] is None

    def on_servers(self, action: Callable[[Server], object]) -> bool:
        done = self._same(self.servers, action)
        out = [s.data_to_send() for s in self.servers]
        assert out[0] == out[1], "the two stock servers diverged"
        self.send(out[0])
        return done

    def on_clients(self, action: Callable[[Client], object]) -> bool:
        done = self._same(self.clients, action)
        out = (self.fast.data_to_send(), self.oracle.data_to_send())
        assert out[0] == out[1], (list(frames_of(out[0])), list(frames_of(out[1])))
        self.upstream += out[0]
        return done

    def send(self, frames: bytes) -> None:
        """Whole frames onto the wire to the clients."""
        at = 0
        while at < len(frames):
            self.starts.append(len(self.wire) + at)
            at += 9 + int.from_bytes(frames[at : at + 3], "big")
        self.wire += frames

    # -- what each side has ------------------------------------------------------

    def server_streams(self, states: tuple[StreamState, ...] = SERVER_SENDING) -> list[int]:
        streams = self.fast_server.streams
        return sorted(sid for sid, s in streams.items() if s.state_machine.state in states)

    def client_streams(
        self, states: tuple[StreamState, ...] = CLIENT_RECEIVING, head: bool | None = None
    ) -> list[int]:
        return sorted(
            sid
            for sid, s in self.fast.streams.items()
            if s.state_machine.state in states
            and (head is None or bool(s.state_machine.headers_received) == head)
        )

    def client_window(self, sid: int) -> int:
        """What the fast client would take on ``sid`` now: both windows."""
        conn = self.fast._inbound_flow_control_window_manager.current_window_size
        return min(conn, self.fast.streams[sid]._inbound_window_manager.current_window_size)

    def has_sendable(self) -> bool:
        return bool(self.server_streams())

    def headed(self) -> list[int]:
        """Streams the server may send DATA on: it sent their final head."""
        return [sid for sid in self.server_streams() if sid in self.sent]

    # -- the client's actions ----------------------------------------------------------

    @precondition(lambda self: len(self.requests) < 8 and not self.failed)
    @rule(upload=st.booleans())
    def request(self, upload: bool) -> None:
        """A request, sent to the servers at once (with what was queued before it)."""
        ids: list[int] = []

        def send(client: Client) -> None:
            sid = client.get_next_available_stream_id()
            ids.append(sid)
            send = getattr(client, "send_request", client.send_headers)  # as the engine
            send(sid, list(UPLOAD if upload else REQUEST), end_stream=not upload)

        if self.on_clients(send):
            assert ids[0] == ids[1]
            self.requests.append(ids[0])
            self.to_servers()

    @rule(
        data=st.data(),
        kind=st.sampled_from(
            ["ack"] * 4
            + ["window"] * 3
            + ["body"] * 3
            + ["end_stream", "settings", "settings", "ping", "reset", "goaway", "goaway"]
        ),
    )
    def client_action(self, data: st.DataObject, kind: str) -> None:
        """What a client does besides requests: acknowledge what it read
        (the engine's way of re-opening windows: h2 sends WINDOW_UPDATE once
        half a window is acknowledged), open windows, send a request body,
        change SETTINGS_INITIAL_WINDOW_SIZE (stream windows change when the
        server acknowledges), PING, RST_STREAM, GOAWAY. (Not MAX_FRAME_SIZE:
        h2 reads its frame size limit once per ``receive_data``, so for h2
        itself a SETTINGS ack and a larger DATA frame in one read differ from
        the two in two reads.) What it sends reaches the servers at once, or later."""
        draw = data.draw
        sending = self.client_streams(CLIENT_SENDING)
        if kind == "ack" and any(self.unacked.values()):
            sid = draw(st.sampled_from(sorted(s for s, n in self.unacked.items() if n)))
            n = self.unacked.pop(sid)
            self.on_clients(lambda c: c.acknowledge_received_data(n, sid))
        elif kind == "window":
            stream = draw(st.none() | st.sampled_from(self.requests), label="stream")
            increment = draw(st.integers(1, 300_000) | st.just(2**31 - 1), label="increment")
            self.on_clients(lambda c: c.increment_flow_control_window(increment, stream))
        elif kind in ("body", "end_stream") and sending:
            sid = draw(st.sampled_from(sending), label="stream")
            size = draw(st.integers(0, 30000), label="size") if kind == "body" else 0
            end = kind == "end_stream" or draw(st.booleans(), label="end_stream")
            window = self.fast.local_flow_control_window(sid)
            n = min(size, window, self.fast.max_outbound_frame_size)
            self.on_clients(lambda c: c.send_data(sid, body(0, n), end_stream=end))
        elif kind == "settings":
            window = draw(st.sampled_from([0, 1, 16384, 65535, 300_000]), label="window")
            self.on_clients(lambda c: c.update_settings({Setting.INITIAL_WINDOW_SIZE: window}))
        elif kind == "ping":
            self.on_clients(lambda c: c.ping(b"cl13nt!!"))
        elif kind == "reset" and self.client_streams(OPEN_STATES):
            sid = draw(st.sampled_from(self.client_streams(OPEN_STATES)), label="stream")
            code = draw(st.sampled_from([Codes.CANCEL, Codes.PROTOCOL_ERROR]), label="code")
            self.on_clients(lambda c: c.reset_stream(sid, code))
        elif kind == "goaway" and self.fatal_allowed():
            self.on_clients(lambda c: c.close_connection())
        if self.upstream and not self.failed and draw(st.booleans(), label="to servers"):
            self.to_servers()

    @precondition(lambda self: self.upstream and not self.failed)
    @rule()
    def to_servers(self) -> None:
        out = bytes(self.upstream)
        self.upstream.clear()
        self.on_servers(lambda s: s.receive_data(out))

    # -- the server's actions ----------------------------------------------------------

    def _head(self, sid: int, status: bytes, lengths: list[bytes] | None, end: bool) -> bool:
        headers = [(b":status", status)]
        headers += [(b"content-length", v) for v in lengths or []]
        done = self.on_servers(lambda s: s.send_headers(sid, headers, end_stream=end))
        if done and not status.startswith(b"1"):
            one = lengths is not None and len(lengths) == 1 and lengths[0].isdigit()
            self.declared[sid] = int(lengths[0]) if lengths and one else None
            self.sent[sid] = 0
        return done

    @precondition(lambda self: any(s not in self.sent for s in self.server_streams()))
    @rule(
        data=st.data(),
        status=st.sampled_from([b"200"] * 6 + [b"404", b"100", b"103"]),
        lengths=CONTENT_LENGTHS,
        end_stream=st.sampled_from([False] * 4 + [True]),
    )
    def response_head(
        self, data: st.DataObject, status: bytes, lengths: list[bytes] | None, end_stream: bool
    ) -> None:
        ids = [s for s in self.server_streams() if s not in self.sent]
        sid = data.draw(st.sampled_from(ids), label="stream")
        self._head(sid, status, lengths, end_stream)

    @precondition(has_sendable)
    @rule(
        data=st.data(),
        size=SIZES,
        end_stream=st.booleans(),
        pad=st.sampled_from([None] * 5 + [0, 1, 200]),
    )
    def response_data(
        self, data: st.DataObject, size: int | str, end_stream: bool, pad: int | None
    ) -> None:
        """DATA within the server's windows, in frames of its frame size;
        END_STREAM (if asked) on the last frame, sent or not all of it. On a
        stream without a head, a 200 head first."""
        sid = data.draw(st.sampled_from(self.server_streams()), label="stream")
        if sid not in self.sent:
            lengths = data.draw(CONTENT_LENGTHS, label="content-length")
            if not self._head(sid, b"200", lengths, False):
                return
        server = self.fast_server
        window = min(server.local_flow_control_window(sid), MOST_DATA)
        declared = self.declared.get(sid)
        if size == "rest" and declared is not None:
            want = max(0, declared - self.sent.get(sid, 0))
        elif isinstance(size, int):
            want = size
        else:
            want = window
        overhead = 0 if pad is None else pad + 1
        chunk = server.max_outbound_frame_size - overhead
        pieces: list[int] = []
        while True:
            piece = min(want, chunk, window - overhead)
            if piece < 0 or (pieces and piece == 0):
                break
            pieces.append(piece)
            want -= piece
            window -= piece + overhead
            if want == 0:
                break
        if not pieces:
            return
        offset = self.sent.get(sid, 0)

        def send(s: Server) -> None:
            at = offset
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                s.send_data(sid, body(at, piece), end_stream=end_stream and last, pad_length=pad)
                at += piece

        if self.on_servers(send):
            self.sent[sid] = offset + sum(pieces)

    @precondition(lambda self: len(self.headed()) >= 2)
    @rule(
        data=st.data(),
        size=st.sampled_from([8192, 16384, 1000, 1]),
        order=st.lists(st.booleans(), min_size=2, max_size=12),
    )
    def response_data_interleaved(self, data: st.DataObject, size: int, order: list[bool]) -> None:
        """DATA frames of one size for two streams, in the order drawn (as
        a server multiplexing them): blocks of same-size frames with a frame
        of the other stream in them, runs cut by the other stream."""
        pair = st.lists(st.sampled_from(self.headed()), min_size=2, max_size=2, unique=True)
        a, b = data.draw(pair, label="streams")
        frames = [a if first else b for first in order]
        offsets = {sid: self.sent[sid] for sid in (a, b)}

        def send(s: Server) -> None:
            at = dict(offsets)
            for sid in frames:
                if s.local_flow_control_window(sid) >= size:
                    s.send_data(sid, body(at[sid], size))
                    at[sid] += size
            if s is self.fast_server:
                self.sent.update(at)

        self.on_servers(send)

    @rule(
        data=st.data(),
        kind=st.sampled_from(
            ["trailers", "end_stream", "reset", "push", "ping", "settings", "window", "goaway"]
        ),
    )
    def server_action(self, data: st.DataObject, kind: str) -> None:
        """Trailers and END_STREAM after a head (before one, the client's
        connection would fail: left to ``raw_error``), RST_STREAM, a push,
        PING, SETTINGS, WINDOW_UPDATE (for request bodies), GOAWAY."""
        draw = data.draw
        ids = self.headed() if kind in ("trailers", "end_stream") else self.server_streams()
        if kind == "push":
            ids = self.server_streams((StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE))
        if kind in ("trailers", "end_stream", "reset", "push") and not ids:
            return
        if kind in ("trailers", "end_stream", "reset", "push"):
            sid = draw(st.sampled_from(ids), label="stream")
        if kind == "trailers":
            self.on_servers(lambda s: s.send_headers(sid, [(b"x-trailer", b"1")], end_stream=True))
        elif kind == "end_stream":
            self.on_servers(lambda s: s.end_stream(sid))
        elif kind == "reset":
            code = draw(st.sampled_from([Codes.CANCEL, Codes.REFUSED_STREAM]), label="code")
            self.on_servers(lambda s: s.reset_stream(sid, code))
        elif kind == "push":
            self.on_servers(lambda s: s.push_stream(sid, s.get_next_available_stream_id(), REQUEST))
        elif kind == "ping":
            self.on_servers(lambda s: s.ping(b"s3rv3r!!"))
        elif kind == "settings":
            options = {
                Setting.INITIAL_WINDOW_SIZE: [0, 1000, 65535, 1 << 20],
                Setting.MAX_FRAME_SIZE: [16384, 32768],
                Setting.MAX_CONCURRENT_STREAMS: [1, 100],
            }
            new: dict[Setting | int, int] = {
                k: draw(st.sampled_from(v), label=k.name) for k, v in options.items()
            }
            self.on_servers(lambda s: s.update_settings(new))
        elif kind == "window":
            ids = self.server_streams((StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL))
            stream = draw(st.none() | st.sampled_from(ids), label="stream") if ids else None
            increment = draw(st.integers(1, 100_000), label="increment")
            self.on_servers(lambda s: s.increment_flow_control_window(increment, stream))
        elif kind == "goaway" and self.fatal_allowed():
            self.on_servers(lambda s: s.close_connection(Codes.ENHANCE_YOUR_CALM))

    # -- frames no stock server sends --------------------------------------------------

    @rule(data=st.data(), kind=st.sampled_from(RAW_KINDS))
    def raw(self, data: st.DataObject, kind: str) -> None:
        self.send(self.raw_frames(data, kind))

    @precondition(fatal_allowed)
    @rule(data=st.data(), kind=st.sampled_from(FATAL_KINDS))
    def raw_error(self, data: st.DataObject, kind: str) -> None:
        """A connection error, delivered at once (up to somewhere in it) or later."""
        start = len(self.wire)
        self.send(self.raw_frames(data, kind))
        if len(self.wire) > start and not self.failed and data.draw(st.booleans(), label="now"):
            self._deliver(data, data.draw(st.integers(start + 1, len(self.wire)), label="bytes"))

    def raw_frames(self, data: st.DataObject, kind: str) -> bytes:
        """The frames of ``kind``, on a stream that suits it (none if none does)."""
        fast = self.fast
        draw = data.draw
        everything = tuple(StreamState)
        closed = [s for s in self.requests if s not in self.client_streams(everything)]
        closed += self.client_streams((StreamState.CLOSED, StreamState.HALF_CLOSED_REMOTE))
        candidates = {
            "closed": closed,
            "headless": self.client_streams(head=False),
            "split_headers": self.client_streams(everything),
            "continuation": self.client_streams(head=False),
            "idle": [NEVER_OPENED, NEVER_OPENED - 1],
            "rst_idle": [NEVER_OPENED],
            "stream0": [0],
            "settings1": [1],
            "unknown": [*self.client_streams(everything), 0],
            "window_update": [*self.client_streams(everything), 0],
            "goaway": [0],
        }.get(kind, self.client_streams(head=True))
        if not candidates:
            return b""
        sid = draw(st.sampled_from(candidates), label="stream")

        def fitting(most: int = 300) -> int:
            """A length the client takes on ``sid`` without a question."""
            stream = fast.streams[sid]
            room = self.client_window(sid)
            if stream._expected_content_length is not None:
                room = min(room, stream._expected_content_length - stream._actual_content_length)
            return draw(st.integers(0, max(0, min(room, most))), label="length")

        if kind in ("data", "data_flags", "reserved_bit"):
            flags = 0
            if kind == "data_flags":
                flags = draw(st.integers(0, 255), label="flags") & ~PADDED
            stream_id = sid | (0x80000000 if kind == "reserved_bit" else 0)
            return frame(DATA, flags, stream_id, body(0, fitting()))
        if kind == "padded":
            pad = draw(st.integers(0, 40), label="pad")
            payload = bytes([pad]) + body(0, fitting()) + b"\0" * pad
            return frame(DATA, PADDED | draw(st.sampled_from([0, END_STREAM])), sid, payload)
        if kind == "bad_padding":
            return frame(DATA, PADDED, sid, b"\x0aab")
        if kind == "zero_end":
            return data_frame(sid, b"", end_stream=True)
        if kind in ("idle", "headless"):
            return frame(DATA, 0, sid, b"early")
        if kind == "stream0":
            return frame(DATA, 0, 0, b"z" * draw(st.integers(0, 200), label="length"))
        if kind == "settings1":
            return frame(4, 0, 1, b"\0\x04\0\0\xff\xff" * draw(st.integers(1, 30)))
        if kind == "closed":
            return data_frame(sid, b"late", end_stream=draw(st.booleans()))
        if kind == "oversize":
            run = data_frame(sid, body(0, fitting())) if draw(st.booleans(), label="run") else b""
            return run + data_frame(sid, body(0, draw(st.integers(16385, 20000), label="length")))
        if kind == "over_window":
            room = self.client_window(sid)
            if room > MOST_DATA:
                return b""
            left = max(0, room) + draw(st.integers(1, 100), label="excess")
            out = b""
            while left:
                n = min(left, 16384)
                out += data_frame(sid, body(0, n))
                left -= n
            return out
        if kind == "split_headers":
            then = draw(st.sampled_from([sid, *self.client_streams(head=True)]), label="then")
            return frame(HEADERS, 0, sid, STATUS_200) + data_frame(then, b"cut")
        if kind == "continuation":
            head = frame(HEADERS, 0, sid, STATUS_200) + frame(CONTINUATION, END_HEADERS, sid)
            return head + data_frame(sid, b"after", end_stream=draw(st.booleans()))
        if kind == "unknown":
            return frame(0xFA, 0xFF, sid, b"?" * draw(st.integers(0, 50), label="length"))
        if kind == "rst_idle":
            return frame(RST_STREAM, 0, sid, struct.pack(">L", Codes.CANCEL))
        if kind == "second_head":  # a block ``fast_headers`` may have cached
            return frame(HEADERS, END_HEADERS, sid, STATUS_200)
        if kind == "goaway":
            last = max(self.requests, default=0)
            return bytes(hyperframe.frame.GoAwayFrame(0, last_stream_id=last).serialize())
        assert kind == "window_update"
        increment = draw(st.integers(0, 70000), label="increment")
        return frame(WINDOW_UPDATE, 0, sid, struct.pack(">L", increment))

    # -- delivery ----------------------------------------------------------------

    @precondition(lambda self: self.wire and not self.failed)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """A prefix of the wire to both clients, each in its own reads."""
        self._deliver(data, self.cut(data, len(self.wire) + 1, "bytes"))

    @precondition(lambda self: self.wire and not self.failed)
    @rule(data=st.data())
    def deliver_all(self, data: st.DataObject) -> None:
        self._deliver(data, len(self.wire))

    def cut(self, data: st.DataObject, end: int, label: str) -> int:
        """A place in ``wire[1:end]``: anywhere, or near a frame's start
        (mostly inside its 9-byte header)."""
        near = [at for at in self.starts if 0 < at < end]
        if bool(near) and data.draw(st.booleans(), label=f"{label} near a frame"):
            at = data.draw(st.sampled_from(near), label=label) + data.draw(st.integers(-2, 10))
            return min(max(at, 1), end - 1)
        return data.draw(st.integers(1, end - 1), label=label)

    def reads(self, data: st.DataObject, n: int, label: str) -> list[int]:
        if n == 1:
            return []
        count = data.draw(st.integers(0, 4), label=f"{label}: cuts")
        return sorted({self.cut(data, n, label) for _ in range(count)})

    def _deliver(self, data: st.DataObject, n: int) -> None:
        fast_cuts = self.reads(data, n, "fast reads")
        oracle_cuts = self.reads(data, n, "oracle reads")
        piece = bytes(self.wire[:n])
        del self.wire[:n]
        self.starts = [at - n for at in self.starts if at >= n]
        receive = self.fast.receive_data
        if data.draw(st.booleans(), label="fast reads as the engine's"):
            receive = self.engine_reads
        fast = feed(receive, piece, fast_cuts)
        oracle = feed(self.oracle._receive_batch, piece, oracle_cuts)
        self.events[0].extend(fast)
        self.events[1].extend(oracle)
        for event in oracle:
            flow = getattr(event, "flow_controlled_length", None)
            if flow and isinstance(event, (h2.events.DataReceived, h2compat.StreamMalformed)):
                self.unacked[event.stream_id] = self.unacked.get(event.stream_id, 0) + flow
        assert failed(fast) == failed(oracle), (
            "a connection error for one client only",
            _short(h2compat.summary(fast)[-3:]),
            _short(h2compat.summary(oracle)[-3:]),
        )
        self.failed = failed(fast)

    # -- the checks --------------------------------------------------------------

    @invariant()
    def same_as_h2(self) -> None:
        self.steps += 1
        fast, oracle = (h2compat.summary(events) for events in self.events)
        if fast != oracle:
            pairs = itertools.zip_longest(fast, oracle)
            first = next(i for i, (a, b) in enumerate(pairs) if a != b)
            raise AssertionError(
                f"events differ from #{first}:\n fast   {_short(fast[first:])}\n"
                f" oracle {_short(oracle[first:])}"
            )
        assert h2compat.state(self.fast) == h2compat.state(self.oracle)
        out = (self.fast.data_to_send(), self.oracle.data_to_send())
        assert out[0] == out[1], (list(frames_of(out[0])), list(frames_of(out[1])))
        self.upstream += out[0]


def _short(items: list[Any]) -> str:
    """Summaries with their data cut short, for messages."""
    out = []
    for item in items[:4]:
        if item[0] == "data":
            item = ("data", item[1], f"<{len(item[2])} bytes>", item[3])
        out.append(repr(item))
    return ", ".join(out) + (" ..." if len(items) > 4 else "")


SHRINK_SECONDS = 60
"""How long Hypothesis may shrink a failure (its default, 5 minutes, is
reached here: an example is two connections and up to 40 steps)."""


@pytest.fixture
def shrink_quicker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis's shrinking deadline is a module constant, not a setting;
    left as it is where it is not there."""
    engine = importlib.import_module("hypothesis.internal.conjecture.engine")
    if isinstance(getattr(engine, "MAX_SHRINKING_SECONDS", None), int):
        monkeypatch.setattr(engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("shrink_quicker")
def test_fast_data_state_machine() -> None:
    run_state_machine_as_test(
        FastDataMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            report_multiple_bugs=False,
        ),
    )


# -- examples that pin behaviours ---------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("frame_size", [8192, 16384], ids=["8k-frames", "max-frames"])
@pytest.mark.parametrize("read_size", [1000, 65536])
def test_a_megabyte_in_many_reads(read_size: int, frame_size: int) -> None:
    """1 MiB in 8 KiB frames (nginx's) or frames of the maximum size: the
    same bytes, windows and stream state as h2's; the fast client takes every
    frame in itself, gives at most one data event per read, so never more
    than h2 (one per frame), and with reads larger than a frame, fewer."""
    require_fast_data()
    content = body(0, 1 << 20)
    fast, fast_server, oracle, oracle_server = two_pairs()
    wires = []
    for client, server in ((fast, fast_server), (oracle, oracle_server)):
        sid = h2compat._request(client, server)
        client.increment_flow_control_window(len(content))
        client.increment_flow_control_window(len(content), sid)
        server.receive_data(client.data_to_send())
        server.send_headers(sid, [(b":status", b"200"), (b"content-length", b"%d" % len(content))])
        for i in range(0, len(content), frame_size):
            end = i + frame_size >= len(content)
            server.send_data(sid, content[i : i + frame_size], end_stream=end)
        wires.append(server.data_to_send())
    assert wires[0] == wires[1]
    wire = wires[0]
    fast_events: list[Event] = []
    oracle_events: list[Event] = []
    for i in range(0, len(wire), read_size):
        got = fast.receive_data(wire[i : i + read_size])
        runs = [e for e in got if isinstance(e, (h2.events.DataReceived, h2compat.DataRun))]
        assert len(runs) <= 1, f"read {i // read_size}: {len(runs)} data events"
        assert all(isinstance(e, h2compat.DataRun) for e in runs), "not the fast path"
        fast_events += got
        oracle_events += oracle._receive_batch(wire[i : i + read_size])
    assert h2compat.summary(fast_events) == h2compat.summary(oracle_events)
    received = b"".join(bytes(e.data) for e in fast_events if isinstance(e, h2compat.DataRun))
    assert received == content
    assert isinstance(fast_events[-1], h2.events.StreamEnded)
    assert h2compat.state(fast) == h2compat.state(oracle)
    assert fast.data_to_send() == oracle.data_to_send()
    fast_data = sum(isinstance(e, h2compat.DataRun) for e in fast_events)
    oracle_data = sum(isinstance(e, h2.events.DataReceived) for e in oracle_events)
    assert oracle_data == len(content) // frame_size
    assert fast_data <= oracle_data
    if read_size > frame_size + 9:
        assert fast_data <= -(-len(wire) // read_size) < oracle_data


def _malformed_case(
    declared: bytes, frames: list[tuple[int, bool]], bytewise: bool = False
) -> tuple[list[Event], list[Event], Client, Client]:
    """A response with content-length ``declared`` and DATA frames
    ``(size, end_stream)`` (sent raw: no window is checked), to both clients
    (the fast one a byte a read if ``bytewise``, else whole)."""
    fast, fast_server, oracle, oracle_server = two_pairs()
    wires = []
    for client, server in ((fast, fast_server), (oracle, oracle_server)):
        sid = h2compat._request(client, server)
        server.send_headers(sid, [(b":status", b"200"), (b"content-length", declared)])
        wire = server.data_to_send()
        at = 0
        for size, end in frames:
            wire += data_frame(sid, body(at, size), end_stream=end)
            at += size
        wires.append(wire)
    assert wires[0] == wires[1]
    cuts = list(range(1, len(wires[0]))) if bytewise else []
    fast_events = feed(fast.receive_data, wires[0], cuts)
    oracle_events = oracle._receive_batch(wires[1])
    return fast_events, oracle_events, fast, oracle


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("declared", "frames"),
    [
        (b"10", [(5, True)]),  # short
        (b"5", [(10, True)]),  # long, END_STREAM
        (b"5", [(10, False)]),  # long, no END_STREAM
        (b"5", [(3, False), (3, False)]),  # long on the second frame of a run
        (b"10", [(5, False), (0, True)]),  # short, ended by an empty frame
        (b"0", [(1, False)]),
        (b"100", [(40, False), (40, False), (40, True)]),
    ],
)
@pytest.mark.parametrize("split", [False, True], ids=["whole", "bytewise"])
def test_wrong_content_length_is_a_stream_error(
    declared: bytes, frames: list[tuple[int, bool]], split: bool
) -> None:
    """A body that does not match content-length: h2's InvalidBodyLengthError,
    which the stream_errors patch makes StreamMalformed + RST_STREAM, on both
    clients, whether the fast path had taken the stream's earlier frames or not."""
    require_fast_data()
    fast_events, oracle_events, fast, oracle = _malformed_case(declared, frames, split)
    for events in (fast_events, oracle_events):
        bad = [e for e in events if isinstance(e, h2compat.StreamMalformed)]
        assert len(bad) == 1 and bad[0].stream_id == 1, h2compat.summary(events)
        assert "InvalidBodyLengthError" in bad[0].reason
        assert not any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert h2compat.summary(fast_events) == h2compat.summary(oracle_events)
    assert h2compat.state(fast) == h2compat.state(oracle)
    out = fast.data_to_send()
    assert out == oracle.data_to_send()
    assert resets(out) == [(1, Codes.PROTOCOL_ERROR)]


@pytest.mark.timeout(30)
def test_right_content_length_ends_the_stream() -> None:
    """The control case for the one above: 4 + 6 bytes for content-length 10."""
    require_fast_data()
    fast_events, oracle_events, fast, oracle = _malformed_case(b"10", [(4, False), (6, True)])
    assert h2compat.summary(fast_events) == h2compat.summary(oracle_events)
    assert isinstance(fast_events[-1], h2.events.StreamEnded)
    assert any(isinstance(e, h2compat.DataRun) for e in fast_events)
    assert h2compat.state(fast) == h2compat.state(oracle)
    assert fast.data_to_send() == oracle.data_to_send() == b""


@pytest.mark.timeout(30)
def test_short_body_ending_exactly_at_the_window_is_a_stream_error() -> None:
    """content-length 70000, and END_STREAM on the frame that uses up the last
    byte of the window (65535): the body is 4465 bytes short. h2 says
    InvalidBodyLengthError (StreamMalformed, RST_STREAM); the fast path must
    too, and not end the stream as if the body were complete."""
    require_fast_data()
    frames = [(16384, False), (16384, False), (16384, False), (16383, True)]
    fast_events, oracle_events, fast, oracle = _malformed_case(b"70000", frames)
    assert any(isinstance(e, h2compat.StreamMalformed) for e in oracle_events)
    fast_summary = [item[:2] for item in h2compat.summary(fast_events)]
    oracle_summary = [item[:2] for item in h2compat.summary(oracle_events)]
    assert fast_summary == oracle_summary, (
        "fast_data took a body short of its content-length as complete (as when "
        "_start_run checked END_STREAM's length against min(windows, content-length "
        "left) instead of against the content-length left)"
    )
    assert h2compat.state(fast) == h2compat.state(oracle)
    assert fast.data_to_send() == oracle.data_to_send()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reads", ["whole", "1000", "in-header"])
def test_data_beyond_the_connection_window_fails_both(reads: str) -> None:
    """The stream's window is open to 1 MiB, the connection's is h2's 65535:
    the DATA frame that goes past it is a connection error (FLOW_CONTROL_ERROR)
    for both clients, after the same data, with the same GOAWAY."""
    require_fast_data()
    fast, fast_server, oracle, oracle_server = two_pairs()
    wires = []
    for client, server in ((fast, fast_server), (oracle, oracle_server)):
        sid = h2compat._request(client, server)
        client.increment_flow_control_window(1 << 20, sid)
        server.receive_data(client.data_to_send())
        server.send_headers(sid, [(b":status", b"200")])
        wire = server.data_to_send()
        for i in range(5):
            wire += data_frame(sid, body(i * 16384, 16384))
        wires.append(wire)
    assert wires[0] == wires[1]
    wire = wires[0]
    fourth = len(wire) - 2 * (9 + 16384)
    cuts = {
        "whole": [],
        "1000": list(range(1000, len(wire), 1000)),
        "in-header": [fourth + 3, fourth + 7],
    }[reads]
    fast_events = feed(fast.receive_data, wire, cuts)
    oracle_events = oracle._receive_batch(wire)
    for events in (fast_events, oracle_events):
        assert isinstance(events[-1], h2compat.ConnectionFailed)
        assert isinstance(events[-1].error, h2.exceptions.FlowControlError)
    assert h2compat.summary(fast_events) == h2compat.summary(oracle_events)
    got = b"".join(
        bytes(e.data)
        for e in fast_events
        if isinstance(e, (h2compat.DataRun, h2.events.DataReceived))
    )
    assert got == body(0, 3 * 16384)
    assert h2compat.state(fast) == h2compat.state(oracle)
    out = fast.data_to_send()
    assert out == oracle.data_to_send()
    assert goaway_codes(out) == [Codes.FLOW_CONTROL_ERROR]


def _split_case(kind: str) -> tuple[bytes, bytes, bytes, Client, Client]:
    """(frames before, the frame, frames after) for both clients: a response
    head, a DATA run on its stream, then the frame under test, then DATA."""
    fast, fast_server, oracle, oracle_server = two_pairs()
    wires = []
    for client, server in ((fast, fast_server), (oracle, oracle_server)):
        sid = h2compat._request(client, server)
        server.send_headers(sid, [(b":status", b"200")])
        before = server.data_to_send() + data_frame(sid, body(0, 100))
        if kind == "data":
            target = data_frame(sid, body(100, 50))
        elif kind == "data_end":
            target = data_frame(sid, body(100, 50), end_stream=True)
        elif kind == "empty_data":
            target = data_frame(sid, b"")
        elif kind == "padded":
            target = frame(DATA, PADDED, sid, b"\x03" + body(100, 50) + b"\0\0\0")
        elif kind == "ping":
            target = bytes(hyperframe.frame.PingFrame(0, opaque_data=b"p1ng p0n").serialize())
        else:
            assert kind == "trailers"
            target = frame(HEADERS, END_HEADERS | END_STREAM, sid, b"\x00\x01x\x01y")
        after = b"" if kind in ("data_end", "trailers") else data_frame(sid, body(150, 30))
        wires.append((before, target, after))
    assert wires[0] == wires[1]
    before, target, after = wires[0]
    return before, target, after, fast, oracle


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["data", "data_end", "empty_data", "padded", "ping", "trailers"])
def test_frame_split_across_three_reads(kind: str) -> None:
    """The frame under test split across three reads, at every pair of cuts
    inside its 9-byte header (and a few bytes into its payload): each read
    gives the fast client what it gives h2, and the end state is h2's."""
    require_fast_data()
    cases = 0
    for first in range(1, 9):
        for second in range(first + 1, 13):
            before, target, after, fast, oracle = _split_case(kind)
            second = min(second, len(target))
            if second <= first:
                continue
            wire = before + target + after
            at = len(before)
            reads = [wire[: at + first], wire[at + first : at + second], wire[at + second :]]
            fast_events: list[Event] = []
            oracle_events: list[Event] = []
            for i, read in enumerate(reads):
                got, want = fast.receive_data(read), oracle._receive_batch(read)
                assert h2compat.summary(got) == h2compat.summary(want), (first, second, i)
                fast_events += got
                oracle_events += want
            assert not failed(oracle_events), h2compat.summary(oracle_events)
            assert h2compat.state(fast) == h2compat.state(oracle), (first, second)
            assert fast.data_to_send() == oracle.data_to_send(), (first, second)
            assert fast._partial == b""
            cases += 1
    assert cases >= 8 * 3


@pytest.mark.timeout(30)
def test_a_run_and_its_end_stream_frame_make_one_data_event() -> None:
    """DATA frames of one stream back to back in one read are one DataRun
    (``h2compat.DataRun``'s contract), the END_STREAM frame that closes them
    included: one event and one copy of the bytes, not two."""
    require_fast_data()
    for length in (None, b"300"):
        fast, fast_server, oracle, oracle_server = two_pairs()
        wires = []
        for client, server in ((fast, fast_server), (oracle, oracle_server)):
            sid = h2compat._request(client, server)
            head = [(b":status", b"200")] + ([(b"content-length", length)] if length else [])
            server.send_headers(sid, head)
            for i in range(3):
                server.send_data(sid, body(i * 100, 100), end_stream=i == 2)
            wires.append(server.data_to_send())
        assert wires[0] == wires[1]
        got, want = fast.receive_data(wires[0]), oracle._receive_batch(wires[1])
        assert h2compat.summary(got) == h2compat.summary(want)
        kinds = [type(e).__name__ for e in got]
        assert kinds == ["ResponseReceived", "DataRun", "StreamEnded"], (
            f"content-length {length!r}: {kinds}: the frame with END_STREAM taken in as "
            "a run of its own (as when _take_frames continued a run with frames without "
            "END_STREAM only): one read, two DataRun events for the stream"
        )


def _started_response(size: int) -> tuple[Client, Client, bytes]:
    """A fast and an oracle client, each with a request answered by a head
    (and ``size`` body bytes, if any): the bytes their servers sent, the
    same for both."""
    require_fast_data()
    fast, fast_server, oracle, oracle_server = two_pairs()
    wires = []
    for client, server in ((fast, fast_server), (oracle, oracle_server)):
        sid = h2compat._request(client, server)
        server.send_headers(sid, [(b":status", b"200")])
        if size:
            server.send_data(sid, body(0, size))
        wires.append(server.data_to_send())
    assert wires[0] == wires[1]
    return fast, oracle, wires[0]


def _bad_header(kind: str) -> bytes:
    return {
        "DATA on stream 0": frame(DATA, 0, 0, b"early"),
        "HEADERS on stream 0": frame(HEADERS, END_HEADERS, 0, STATUS_200),
        "SETTINGS on stream 1": frame(4, 0, 1, b"\0" * 6),
        "PING on stream 1": frame(6, 0, 1, b"\0" * 8),
    }[kind]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("split", [9, 4, 0], ids=["header-in-one-read", "header-in-two", "alone"])
@pytest.mark.parametrize(
    "kind", ["DATA on stream 0", "HEADERS on stream 0", "SETTINGS on stream 1", "PING on stream 1"]
)
def test_a_frame_header_h2_refuses_fails_the_read_it_arrives_in(kind: str, split: int) -> None:
    """h2 parses a frame's 9-byte header as soon as it has it: a header
    naming a stream its type cannot have is a connection error in that read,
    before the payload arrives (and the events of the frames before it stay).
    The fast path keeps the start of a frame until the frame is whole; it
    must still fail where h2 fails, not one read (or a stalled peer) later:
    with the header at the end of a read, or split across two reads (the
    first ``split`` bytes at the end of one, the rest alone in the next)."""
    fast, oracle, wire = _started_response(100)
    bad = _bad_header(kind)
    reads = [wire + bad[:split], bad[split:9]] if split else [wire, bad[:9]]
    if split == 9:
        reads.pop()
    fast_events: list[Event] = []
    oracle_events: list[Event] = []
    for i, read in enumerate(reads):
        got, want = fast.receive_data(read), oracle._receive_batch(read)
        assert h2compat.summary(got) == h2compat.summary(want), (
            f"{kind}, read {i}: h2 fails the connection on the frame header; here, not "
            "(as when fast_data kept it as the start of a frame, failing only once the "
            "payload arrived)"
        )
        fast_events += got
        oracle_events += want
    assert h2compat.summary(oracle_events)[-1] == ("failed", "ProtocolError")
    assert h2compat.state(fast) == h2compat.state(oracle)
    assert fast.data_to_send() == oracle.data_to_send()


# -- frames with a question about them, one by one ------------------------------------------


def _padded(stream_id: int, payload: bytes, pad: int) -> bytes:
    return frame(DATA, PADDED, stream_id, bytes([pad]) + payload + b"\0" * pad)


def _late_after_end(client: Client, server: Server, info: dict[str, bytes]) -> bytes:
    server.end_stream(1)
    return server.data_to_send() + data_frame(1, b"late")


def _late_after_reset(client: Client, server: Server, info: dict[str, bytes]) -> bytes:
    client.reset_stream(1)
    return data_frame(1, b"late")


def _late_after_goaway(client: Client, server: Server, info: dict[str, bytes]) -> bytes:
    client.close_connection()
    return data_frame(1, b"late")


def _open_windows(client: Client, server: Server, connection: int, stream: int) -> bytes:
    if connection:
        client.increment_flow_control_window(connection)
    if stream:
        client.increment_flow_control_window(stream, 1)
    server.receive_data(client.data_to_send())
    return b""


CASES: dict[str, tuple[bool, Callable[[Client, Server, dict[str, bytes]], bytes]]] = {
    # name: (a connection error?, what happens before the frames, returning the frames).
    # Set up and delivered already: streams 1 (head, 100 bytes of DATA), 3
    # (a 103, then a head with content-length 1000: ``i["1xx"]`` is the
    # 103's frame), 5 (no response yet), 7 (a head with END_STREAM) and 9 (an
    # upload the client is still sending, ended by the server); 11 is idle.
    "DATA before HEADERS": (True, lambda c, s, i: data_frame(5, b"early")),
    "DATA on an idle stream": (True, lambda c, s, i: data_frame(11, b"idle")),
    "DATA on stream 0": (True, lambda c, s, i: frame(DATA, 0, 0, b"zero")),
    "DATA on a stream ended by the server": (False, _late_after_end),  # h2: RST_STREAM
    "DATA on a stream reset by the client": (False, _late_after_reset),
    "DATA larger than the frame size": (True, lambda c, s, i: data_frame(1, body(0, 16385))),
    "DATA larger than the frame size, after a run": (
        True,
        lambda c, s, i: (
            _open_windows(c, s, 1 << 20, 1 << 20)
            + data_frame(1, body(0, 100))
            + data_frame(1, body(0, 16385))
        ),
    ),
    "DATA past the stream window, inside the connection's": (
        True,
        lambda c, s, i: (
            _open_windows(c, s, 1 << 20, 0)
            + b"".join(data_frame(1, body(0, 16384)) for _ in range(3))
            + data_frame(1, body(0, 65535 - 100 - 3 * 16384 + 1))
        ),
    ),
    "DATA filling the stream window exactly": (
        False,
        lambda c, s, i: (
            _open_windows(c, s, 1 << 20, 0)
            + b"".join(data_frame(1, body(0, 16384)) for _ in range(3))
            + data_frame(1, body(0, 65535 - 100 - 3 * 16384))
        ),
    ),
    "DATA past the connection window, inside the stream's": (
        True,
        lambda c, s, i: (
            _open_windows(c, s, 0, 1 << 20)
            + b"".join(data_frame(1, body(0, 16384)) for _ in range(3))
            + data_frame(1, body(0, 65535 - 100 - 3 * 16384 + 1))
        ),
    ),
    "DATA filling the connection window exactly": (
        False,
        lambda c, s, i: (
            _open_windows(c, s, 0, 1 << 20)
            + b"".join(data_frame(1, body(0, 16384)) for _ in range(3))
            + data_frame(1, body(0, 65535 - 100 - 3 * 16384))
        ),
    ),
    "DATA past content-length in a run": (
        False,
        lambda c, s, i: data_frame(3, body(0, 600)) + data_frame(3, body(0, 401)),
    ),
    "DATA to content-length exactly, then END_STREAM": (
        False,
        lambda c, s, i: data_frame(3, body(0, 600)) + data_frame(3, body(0, 400), end_stream=True),
    ),
    "HEADERS without END_HEADERS, then DATA on another stream": (
        True,
        lambda c, s, i: frame(HEADERS, 0, 5, STATUS_200) + data_frame(1, b"cut"),
    ),
    "trailers without END_HEADERS, then DATA on that stream": (
        True,
        lambda c, s, i: frame(HEADERS, END_STREAM, 1, b"\x00\x01x\x01y") + data_frame(1, b"cut"),
    ),
    "HEADERS + CONTINUATION, then DATA": (
        False,
        lambda c, s, i: (
            frame(HEADERS, 0, 5, STATUS_200)
            + frame(CONTINUATION, END_HEADERS, 5)
            + data_frame(5, b"after")
            + data_frame(1, b"and")
        ),
    ),
    "DATA after the client's GOAWAY": (
        True,
        _late_after_goaway,
    ),
    "PADDED DATA in a run": (
        False,
        lambda c, s, i: (
            data_frame(1, b"a" * 10) + _padded(1, b"b" * 10, 5) + data_frame(1, b"c" * 10)
        ),
    ),
    "padding longer than the frame": (True, lambda c, s, i: frame(DATA, PADDED, 1, b"\x0aab")),
    "flags DATA does not define, the stream id's reserved bit": (
        False,
        lambda c, s, i: (
            frame(DATA, 0xF6, 1, b"a" * 10)
            + frame(DATA, 0, 1 | 0x80000000, b"b" * 10)
            + frame(DATA, 0x20 | END_STREAM, 1, b"c" * 10)
        ),
    ),
    "an unknown frame type inside a run": (
        False,
        lambda c, s, i: (
            data_frame(1, b"a" * 10) + frame(0xFA, 0, 1, b"?") + data_frame(1, b"b" * 10)
        ),
    ),
    "an empty DATA with END_STREAM after a run": (
        False,
        lambda c, s, i: data_frame(1, b"a" * 10) + data_frame(1, b"", end_stream=True),
    ),
    "a second head, without END_STREAM": (
        True,
        lambda c, s, i: frame(HEADERS, END_HEADERS, 1, STATUS_200),
    ),
    "DATA on a stream the server ended, the client still sending": (
        False,  # h2: RST_STREAM(STREAM_CLOSED)
        lambda c, s, i: data_frame(9, b"late"),
    ),
    "END_STREAM past the stream window, after a run": (
        True,
        lambda c, s, i: (
            _open_windows(c, s, 1 << 20, 0)
            + b"".join(data_frame(1, body(0, 16384)) for _ in range(3))
            + data_frame(1, body(0, 65535 - 100 - 3 * 16384 + 1), end_stream=True)
        ),
    ),
    "END_STREAM past the connection window, after a run": (
        True,
        lambda c, s, i: (
            _open_windows(c, s, 0, 1 << 20)
            + b"".join(data_frame(1, body(0, 16384)) for _ in range(3))
            + data_frame(1, body(0, 65535 - 100 - 3 * 16384 + 1), end_stream=True)
        ),
    ),
    "END_STREAM filling the window exactly, after a run": (
        False,
        lambda c, s, i: (
            b"".join(data_frame(1, body(0, 16384)) for _ in range(3))
            + data_frame(1, body(0, 65535 - 100 - 3 * 16384), end_stream=True)
        ),
    ),
    "PADDED END_STREAM frame after a run": (
        False,
        lambda c, s, i: (
            data_frame(1, b"a" * 10)
            + frame(DATA, PADDED | END_STREAM, 1, b"\x05" + b"b" * 10 + b"\0" * 5)
        ),
    ),
    "a 1xx head with END_STREAM on a stream without a head": (
        True,
        lambda c, s, i: frame(HEADERS, END_HEADERS | END_STREAM, 5, i["1xx"][9:]),
    ),
    "RST_STREAM on an idle stream": (
        True,
        lambda c, s, i: frame(RST_STREAM, 0, 11, struct.pack(">L", Codes.CANCEL)),
    ),
}


def _case_wire(name: str, nginx_like: bool) -> tuple[Client, Client, bytes]:
    """Both clients after the setup (delivered and checked), and the case's
    frames. ``nginx_like`` servers keep their HPACK table empty, so the fast
    client has cached the response head blocks of the setup."""
    frames = CASES[name][1]
    fast, fast_server, oracle, oracle_server = two_pairs()
    setup = []
    info: dict[str, bytes] = {}
    for client, server in ((fast, fast_server), (oracle, oracle_server)):
        if nginx_like:
            server.encoder.header_table_size = 0
        for sid in (1, 3, 5, 7, 9):
            client.send_headers(sid, UPLOAD if sid == 9 else REQUEST, end_stream=sid != 9)
        server.receive_data(client.data_to_send())
        server.send_headers(1, [(b":status", b"200")])
        server.send_data(1, body(0, 100))
        wire = server.data_to_send()
        server.send_headers(3, [(b":status", b"103")])
        info["1xx"] = server.data_to_send()
        server.send_headers(3, [(b":status", b"200"), (b"content-length", b"1000")])
        server.send_headers(7, [(b":status", b"200")], end_stream=True)
        server.send_headers(9, [(b":status", b"200")], end_stream=True)
        setup.append(wire + info["1xx"] + server.data_to_send())
    assert setup[0] == setup[1]
    before = fast.receive_data(setup[0]), oracle._receive_batch(setup[1])
    assert h2compat.summary(before[0]) == h2compat.summary(before[1])
    assert not failed(before[1])
    pairs = ((fast, fast_server), (oracle, oracle_server))
    wires = [frames(client, server, info) for client, server in pairs]
    assert wires[0] == wires[1]
    return fast, oracle, wires[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("nginx_like", [False, True], ids=["h2", "nginx"])
@pytest.mark.parametrize("reads", ["whole", "framewise", "mid-header"])
@pytest.mark.parametrize("name", list(CASES))
def test_frames_with_a_question(name: str, reads: str, nginx_like: bool) -> None:
    """Frames the fast path must leave to h2 (or take exactly as h2 would),
    after a response head and a run of DATA: in one read, a read per frame,
    and reads cut inside every frame header. The fast client's events,
    state and output are h2's; h2 fails the connection where the case says."""
    require_fast_data()
    fast, oracle, wire = _case_wire(name, nginx_like)
    starts = []
    at = 0
    while at < len(wire):
        starts.append(at)
        at += 9 + int.from_bytes(wire[at : at + 3], "big")
    cuts = {"whole": [], "framewise": starts[1:], "mid-header": [a + 4 for a in starts]}[reads]
    fast_events = feed(fast.receive_data, wire, cuts)
    oracle_events = oracle._receive_batch(wire)
    fast_summary, oracle_summary = h2compat.summary(fast_events), h2compat.summary(oracle_events)
    assert failed(oracle_events) == CASES[name][0], oracle_summary
    assert fast_summary == oracle_summary, (_short(fast_summary[-4:]), _short(oracle_summary[-4:]))
    assert h2compat.state(fast) == h2compat.state(oracle)
    assert fast.data_to_send() == oracle.data_to_send()


@pytest.mark.timeout(30)
def test_an_oversized_frame_in_many_reads_goes_to_h2_at_once() -> None:
    """A DATA frame announcing more than SETTINGS_MAX_FRAME_SIZE (here a
    claimed 16 MiB, trickled in 1000-byte reads): the fast path hands it to
    h2 as soon as its header is in, rather than re-joining a growing partial
    frame on every read (quadratic), and from then on everything goes to h2:
    both clients see the same events and state (h2 fails the connection once
    the frame is whole) and want to send the same bytes."""
    fast, oracle, wire = _started_response(0)
    claimed = 2**24 - 1
    data = wire + struct.pack(">I", claimed)[1:] + bytes([DATA, 0]) + struct.pack(">I", 1)
    data += bytes(claimed)[:200_000]
    reads = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    fast_events: list[Event] = []
    oracle_events: list[Event] = []
    for read in reads:
        got, want = fast.receive_data(read), oracle._receive_batch(read)
        assert h2compat.summary(got) == h2compat.summary(want)
        fast_events += got
        oracle_events += want
        if failed(want):
            break
    assert fast._h2_only
    assert fast._partial == b""
    assert h2compat.state(fast) == h2compat.state(oracle)
    assert fast.data_to_send() == oracle.data_to_send()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reads", ["bytes", "engine"])
@pytest.mark.parametrize(
    "pattern",
    [
        "aaaab",
        "aabaa",
        "abab",
        "aaaa+end",
        "aaaa+short",
        "aaaaaaaaaaaab",
        "aaaaaaaaaaabaaa",
        "aaaaaaaaaaaa+end",
        "aaaaaaaaaaaa+short",
    ],
)
def test_blocks_of_same_size_frames_are_checked_whole(pattern: str, reads: str) -> None:
    """A run of frames with the same header is taken in as a block
    (``_same_frames`` compares their headers row by row, then column by
    column): a frame of another stream with the same length (stream ids 1
    and 3 differ in one byte), one ending the stream or one of another
    length inside the block must not be taken as part of it."""
    require_fast_data()
    frames = pattern.split("+")[0]
    size = 8192 if len(frames) < 6 else 4096  # within h2's initial 64 KiB window

    def send(server: Server, a: int, b: int) -> None:
        for i, which in enumerate(frames):
            server.send_data(a if which == "a" else b, body(i, size))
        if pattern.endswith("+end"):
            server.send_data(a, body(99, size), end_stream=True)
        if pattern.endswith("+short"):
            server.send_data(a, body(98, size - 1))

    fast, oracle, wire, _ = two_streams(send)
    receive = fast.receive_data if reads == "bytes" else engine_reads(fast)
    got, want = receive(wire), oracle._receive_batch(wire)
    assert h2compat.summary(got) == h2compat.summary(want)
    assert h2compat.state(fast) == h2compat.state(oracle)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cut", [3, 9, 100, 4104])
def test_blocks_after_a_frame_completed_in_the_next_read(cut: int) -> None:
    """The engine's second read first completes the frame the first one
    ended inside, so the block checks start after it in the buffer; with
    all-zero payloads a check looking at the wrong offset sees identical
    "headers" and would take the frame of stream 3 into stream 1's block."""
    require_fast_data()

    def send(server: Server, a: int, b: int) -> None:
        for which in "aaaaaaaaaaabaaa":
            server.send_data(a if which == "a" else b, bytes(4096))

    fast, oracle, wire, head = two_streams(send)
    fast_events = feed(engine_reads(fast), wire, [head + cut])
    oracle_events = oracle._receive_batch(wire)
    assert h2compat.summary(fast_events) == h2compat.summary(oracle_events)
    assert h2compat.state(fast) == h2compat.state(oracle)


@pytest.mark.parametrize(
    ("frames", "most", "expected"),
    [
        ("a" * 8 + "b" * 120, 1000, 8),  # nginx's interleaved runs
        ("a" * 128, 1000, 128),
        ("a" * 200, 1000, 128),  # _BLOCK at most
        ("a" * 127 + "E", 1000, 127),  # the END_STREAM frame ends the block, not the check
        ("a" * 40 + "H" + "a" * 80, 1000, 40),  # a stream id differing in its high byte
        ("a" * 30 + "b", 1000, 30),
        ("a" * 50, 20, 20),  # what the budget allows
        ("ab", 1000, 1),
        ("a", 1000, 1),
    ],
)
def test_same_frames_finds_where_a_block_ends(frames: str, most: int, expected: int) -> None:
    """The length of the block of identical frame headers from a position
    (after unrelated bytes, as in the engine's buffer). A check that gave up
    on a block with a different frame at its end took a 1 MiB response's
    127 frames one by one: 1-thread 1 MiB HTTP/2 downloads ran at 0.65 x."""
    ids = {"a": (1, 0), "b": (3, 0), "E": (1, 1), "H": (1 | 1 << 24, 0)}
    wire = b"".join(
        struct.pack(">BHBBL", 0, 8192, 0, ids[f][1], ids[f][0]) + bytes([i % 251]) * 8192
        for i, f in enumerate(frames)
    )
    for base in (b"junk" + wire, bytearray(b"junk" + wire + b"\0" * 9000)):
        end = 4 + len(wire)
        assert h2compat._same_frames(base, 4, end, 8201, most) == expected
