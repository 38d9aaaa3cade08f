"""A pytest plugin that runs requests' own test suite on httpcore.RequestsAdapter.

Loaded with ``-p httpcore_requests_suite`` (this directory on ``PYTHONPATH``)
from the root of requests' source distribution; ``run.sh`` beside this file
does all of it. Every ``requests.Session`` (``requests.get()`` and friends
make one too) mounts one fresh ``RequestsAdapter`` for ``http://`` and
``https://``, exactly where requests mounts its ``HTTPAdapter``; a test that
mounts an adapter of its own keeps it.

``HTTPCORE_REQUESTS_SUITE=urllib3`` runs the same selection on requests'
own HTTPAdapter (urllib3), for comparison.

The tests that cannot pass on an adapter that is not urllib3 (they test
urllib3's internals) are listed in ``skips.py`` with their reasons, and so
are the few that cannot run on this machine at all.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import requests
import requests.sessions
from skips import ADAPTER_SKIPS, ALWAYS_SKIPS

import httpcore

MODE = os.environ.get("HTTPCORE_REQUESTS_SUITE", "adapter")
if MODE not in ("adapter", "urllib3"):
    raise RuntimeError(f"HTTPCORE_REQUESTS_SUITE={MODE!r}: use adapter or urllib3")

_sent = 0
_sent_lock = threading.Lock()


class _CountingAdapter(httpcore.RequestsAdapter):
    """The adapter, counting what it sends (the summary shows it was used)."""

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        global _sent
        with _sent_lock:
            _sent += 1
        return super().send(*args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    if MODE != "adapter":
        return
    original = requests.sessions.Session.__init__

    def __init__(self: requests.Session) -> None:
        original(self)
        adapter = _CountingAdapter()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    requests.sessions.Session.__init__ = __init__  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = dict(ALWAYS_SKIPS)
    if MODE == "adapter":
        skips.update(ADAPTER_SKIPS)
    unused = set(skips)
    for item in items:
        reason = skips.get(item.nodeid)
        if reason is None:
            # parametrized ids: an entry may name the function for every case
            reason = skips.get(item.nodeid.split("[", 1)[0])
            key = item.nodeid.split("[", 1)[0]
        else:
            key = item.nodeid
        if reason is not None:
            unused.discard(key)
            item.add_marker(pytest.mark.skip(reason=f"httpcore skip list: {reason}"))
    if unused:
        raise pytest.UsageError(f"skip list entries that match no test: {sorted(unused)}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MODE == "adapter":
        terminalreporter.write_line(
            f"httpcore.RequestsAdapter sent {_sent} requests for requests' test suite"
        )
    else:
        terminalreporter.write_line("requests' own HTTPAdapter (urllib3) ran the suite")
