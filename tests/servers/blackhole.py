"""Blackholed listeners: addresses whose ``connect()`` hangs instead of failing.

A :class:`Blackhole` is a listening socket with ``listen(0)`` whose accept
queue the test fills with connections of its own and never accepts: the
kernel then drops further SYNs, so a client's connect neither completes nor
is refused until its own timeout. :meth:`Blackhole.fill` checks that this
really happens (a non-blocking probe connect must not complete within
``probe_timeout``); it returns False on a kernel that accepts beyond the
backlog, for the caller to skip.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator

FILL_STEP = 0.2
"""How long a filler connect may take before the queue is taken to be full."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _connects_within(sock: socket.socket, timeout: float) -> bool:
    _, writable, _ = select.select([], [sock], [], timeout)
    return bool(writable) and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


class Blackhole:
    """``listen(0)`` on ``(host, port)`` (``port=0``: any free port)."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host = host
        self.listener = socket.socket(_family(host), socket.SOCK_STREAM)
        try:
            self.listener.bind((host, port))
            self.listener.listen(0)
        except OSError:
            self.listener.close()
            raise
        self.port: int = self.listener.getsockname()[1]
        self._fillers: list[socket.socket] = []

    def _connect(self) -> socket.socket:
        s = socket.socket(_family(self.host), socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((self.host, self.port))
        self._fillers.append(s)
        return s

    def fill(self, probe_timeout: float = 1.0) -> bool:
        """Fill the accept queue; True once a probe connect hangs for ``probe_timeout``."""
        for _ in range(16):
            if not _connects_within(self._connect(), FILL_STEP):
                break
        else:
            return False
        return not _connects_within(self._connect(), probe_timeout)

    def close(self) -> None:
        for s in self._fillers:
            s.close()
        self._fillers.clear()
        self.listener.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def on_common_port(hosts: list[str], attempts: int = 20) -> list[Blackhole]:
    """Unfilled blackholes on every address of ``hosts``, all on one port; the
    first gets a free port, the others retry with a new one on EADDRINUSE."""
    for _ in range(attempts):
        holes = [Blackhole(hosts[0])]
        try:
            for host in hosts[1:]:
                holes.append(Blackhole(host, holes[0].port))
        except OSError:
            for hole in holes:
                hole.close()
            continue
        return holes
    raise RuntimeError(f"no port free on all of {hosts}")


@contextlib.contextmanager
def filled(holes: list[Blackhole]) -> Iterator[bool]:
    """Fill every blackhole (True when all of them hang connects); closed on the way out."""
    try:
        yield all([hole.fill() for hole in holes])
    finally:
        for hole in holes:
            hole.close()
