"""The pool's planner is a pure function: its rules checked on random
snapshots, without sockets (``engine/planner.py``)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from httpcore._models import Origin
from httpcore.engine.planner import Plan, SlotView, WaiterView, plan

ORIGINS = [Origin(b"http", b"a", 80), Origin(b"http", b"b", 80), Origin(b"https", b"c", 443)]


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[list[WaiterView], list[SlotView], int | None]:
    slots = []
    for i in range(draw(st.integers(0, 6))):
        connecting = draw(st.booleans())
        idle = not connecting and draw(st.booleans())
        slots.append(
            SlotView(
                id=i + 1,
                origin=draw(st.sampled_from(ORIGINS)),
                connecting=connecting,
                may_share=draw(st.booleans()),
                spare=0 if connecting else draw(st.integers(0, 3)),
                idle=idle,
                idle_since=draw(st.floats(0, 100)),
                expired=not connecting and draw(st.booleans()),
            )
        )
    waiters = [
        WaiterView(draw(st.sampled_from(ORIGINS)), draw(st.booleans()), draw(st.booleans()))
        for _ in range(draw(st.integers(0, 8)))
    ]
    limit = draw(st.one_of(st.none(), st.integers(1, 6)))
    return waiters, slots, limit


def _check(waiters: list[WaiterView], slots: list[SlotView], limit: int | None, out: Plan) -> None:
    by_id = {s.id: s for s in slots}
    served = [i for i, _ in out.grants] + out.opens
    assert len(served) == len(set(served)), "a waiter served twice"
    for index, slot_id in out.grants:
        slot = by_id[slot_id]
        assert slot.origin == waiters[index].origin
        assert not waiters[index].fresh
        assert not slot.connecting and not slot.expired
    for slot_id, count in Counter(slot_id for _, slot_id in out.grants).items():
        assert count <= by_id[slot_id].spare, "more grants than the slot takes"
    closed = [slot_id for slot_id, _ in out.closes]
    assert len(closed) == len(set(closed))
    granted = {slot_id for _, slot_id in out.grants}
    for slot_id in closed:
        assert by_id[slot_id].idle, "closed a busy or connecting slot"
        assert slot_id not in granted, "closed a slot it granted"
    if limit is not None:
        # new connections only where there is room, or where one is closed for it
        assert len(slots) - len(closed) + len(out.opens) <= max(limit, len(slots))


@settings(max_examples=400, deadline=None)
@given(snapshots())
def test_plan_rules(snapshot: tuple[list[WaiterView], list[SlotView], int | None]) -> None:
    waiters, slots, limit = snapshot
    out = plan(waiters, slots, limit)
    _check(waiters, slots, limit, out)
    assert plan(waiters, slots, limit) == out, "the same state must give the same plan"


def test_evicts_idle_connection_of_another_origin_for_a_waiter() -> None:
    """Issue 8, bug 1 and 2: a full pool of idle connections (either protocol)
    to other origins makes room by closing the longest idle one."""
    a, b = ORIGINS[0], ORIGINS[1]
    slots = [
        SlotView(1, a, False, False, 100, True, 5.0, False),  # idle HTTP/2-like
        SlotView(2, a, False, False, 1, True, 1.0, False),  # idle HTTP/1.1-like, older
    ]
    out = plan([WaiterView(b, False, False)], slots, 2)
    assert out.opens == [0]
    assert out.closes == [(2, "evicted for another origin")]
    assert out.grants == []


def test_waits_for_a_connection_that_may_be_shared() -> None:
    """Requests to an origin whose connection may come up HTTP/2 wait for it
    instead of each opening their own."""
    c = ORIGINS[2]
    out = plan([WaiterView(c, False, True)] * 3, [], 10)
    assert out.opens == [0]
    assert out.grants == []
