"""hyperframe's frame reprs, made cheaper by ``engine/h2compat.py``, must not change.

h2 builds ``repr(frame)`` for every frame it receives; the engine replaces
two of hyperframe's helpers with versions that skip copying the payload.
Whatever frame they see, the text must be what hyperframe itself makes.
"""

from __future__ import annotations

import binascii

import hyperframe.frame
from hypothesis import given, settings
from hypothesis import strategies as st

import httpcore.engine.h2compat  # noqa: F401  (installs the patches)


def _reference_raw_data_repr(data: bytes | None) -> str:
    """hyperframe 6.1's ``_raw_data_repr``."""
    if not data:
        return "None"
    text = binascii.hexlify(data).decode("ascii")
    if len(text) > 20:
        text = text[:20] + "..."
    return "<hex:" + text + ">"


def _reference_data_repr(frame: hyperframe.frame.DataFrame) -> str:
    """hyperframe 6.1's ``Frame.__repr__`` for a DATA frame (serialized body)."""
    body = _reference_raw_data_repr(frame.serialize_body())
    return f"DataFrame(stream_id={frame.stream_id}, flags={frame.flags!r}): {body}"


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=40) | st.sampled_from([b"x" * 16384]),
       pad=st.none() | st.integers(0, 5), end=st.booleans())
def test_data_frame_repr_is_hyperframes(data: bytes, pad: int | None, end: bool) -> None:
    frame = hyperframe.frame.DataFrame(1, data=data)
    if pad is not None:
        frame.flags.add("PADDED")
        frame.pad_length = pad
    if end:
        frame.flags.add("END_STREAM")
    wire = frame.serialize()
    parsed, length = hyperframe.frame.Frame.parse_frame_header(memoryview(wire[:9]))
    parsed.parse_body(memoryview(wire[9:9 + length]))
    assert repr(parsed) == _reference_data_repr(parsed)
    assert repr(frame) == _reference_data_repr(frame)


@settings(max_examples=100, deadline=None, database=None)
@given(data=st.binary(max_size=30))
def test_other_frames_repr_is_hyperframes(data: bytes) -> None:
    frame = hyperframe.frame.ContinuationFrame(1, data=data)
    expected = f"ContinuationFrame(stream_id=1, flags=[]): data={_reference_raw_data_repr(data)}"
    assert repr(frame) == expected
