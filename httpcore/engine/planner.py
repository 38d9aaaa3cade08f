# Runs on the engine thread only (a pure function: no state, no I/O). Decides
# which waiting request gets which connection; the pool applies the plan.
"""The pool's decisions, as a plain function of a snapshot of its state.

Rules, in order, for each waiting request (oldest first) to an origin:

1. a connection to its origin that takes another exchange now: a busy
   multiplexed one first, else the most recently idle (its socket is the
   least likely to have been closed by the server);
2. wait, if a connection to its origin that may take more (still
   connecting and may come up HTTP/2, or HTTP/2 without the server's
   SETTINGS yet) is on its way;
3. a new connection, if ``max_connections`` allows;
4. a new connection in place of the longest-idle connection to another
   origin (HTTP/1.1 and HTTP/2 alike), which is closed;
5. otherwise wait (at most the pool timeout).

Idle connections past their keep-alive expiry are closed first. A request
that must have a fresh connection (a retry after a stale keep-alive) skips
rules 1 and 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .._models import Origin


@dataclass(slots=True)
class SlotView:
    """What the planner sees of one slot of the pool."""

    id: int
    origin: Origin
    connecting: bool
    """No connection yet."""
    may_share: bool
    """Connecting or unsettled, and may yet take several exchanges."""
    spare: int
    """Exchanges it takes now."""
    idle: bool
    """Live, running no exchange."""
    idle_since: float
    expired: bool
    """Idle past the keep-alive expiry, or unusable."""


@dataclass(frozen=True, slots=True)
class WaiterView:
    origin: Origin
    fresh: bool
    """Must have a new connection."""
    may_share: bool
    """A new connection for it may come up HTTP/2."""


@dataclass(slots=True)
class Plan:
    grants: list[tuple[int, int]] = field(default_factory=list)
    """(waiter index, slot id): start the waiter on that live slot."""
    opens: list[int] = field(default_factory=list)
    """Waiter indexes that each get a new connection."""
    closes: list[tuple[int, str]] = field(default_factory=list)
    """(slot id, reason): close, after the grants and opens."""


def plan(
    waiters: Sequence[WaiterView], slots: Sequence[SlotView], max_connections: int | None
) -> Plan:
    """Serve ``waiters`` in order by the rules in the module docstring."""
    out = Plan()
    spare = {s.id: s.spare for s in slots}
    closing: set[int] = set()
    for s in slots:
        if s.expired and s.idle:
            closing.add(s.id)
            out.closes.append((s.id, "keep-alive expired"))
    live = len(slots) - len(closing)
    sharing: set[Origin] = {s.origin for s in slots if s.may_share and s.id not in closing}
    for index, waiter in enumerate(waiters):
        origin = waiter.origin
        if not waiter.fresh:
            chosen = _best(slots, origin, spare, closing)
            if chosen is not None:
                spare[chosen.id] -= 1
                out.grants.append((index, chosen.id))
                continue
            if origin in sharing:
                continue
        if max_connections is None or live < max_connections:
            live += 1
        else:
            victim = _victim(slots, spare, closing, out)
            if victim is None:
                continue
            closing.add(victim.id)
            out.closes.append((victim.id, "evicted for another origin"))
        out.opens.append(index)
        if waiter.may_share:
            sharing.add(origin)
    return out


def _best(
    slots: Sequence[SlotView], origin: Origin, spare: dict[int, int], closing: set[int]
) -> SlotView | None:
    best: SlotView | None = None
    for s in slots:
        if s.origin != origin or spare[s.id] <= 0 or s.id in closing or s.expired:
            continue
        if best is None or (best.idle, -best.idle_since) > (s.idle, -s.idle_since):
            best = s
    return best


def _victim(
    slots: Sequence[SlotView], spare: dict[int, int], closing: set[int], out: Plan
) -> SlotView | None:
    """The longest-idle connection nothing was granted in this plan."""
    granted = {slot_id for _, slot_id in out.grants}
    victim: SlotView | None = None
    for s in slots:
        if not s.idle or s.id in closing or s.id in granted:
            continue
        if victim is None or s.idle_since < victim.idle_since:
            victim = s
    return victim
