"""``examples/wsgi_app.py`` under gunicorn against real upstreams.

* pre-fork (``--preload``, 4 sync workers): the app and its module-level
  ``Client`` are made in the master, which also makes one upstream request
  (``UPSTREAM_WARMUP``) before forking; every worker must run its own engine
  thread and reach the upstream on connections of its own.
* threaded (``gthread``, 16 threads): the threads share the ``Client``, so one
  pool: one HTTP/2 connection to an HTTP/2 upstream (hypercorn h2c, and nginx
  over TLS, whose ``$connection`` log counts TCP connections).
* each time: SIGTERM, exit code 0, no traceback in gunicorn's output.

The upstream's ``/rendezvous/N`` answers only once ``N`` requests wait there
together: it makes the workers or threads call the upstream at the same time
without any sleep.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.servers.h2nginx import Nginx
from tests.servers.wsgi_gunicorn import Gunicorn, gunicorn, has_thread, ppid, upstream

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn forks")

WORKERS = 4
THREADS = 16


def _concurrently(app: Gunicorn, targets: list[str]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(len(targets)) as pool:
        return list(pool.map(app.get, targets))


def _assert_clean_exit(app: Gunicorn) -> None:
    code, output = app.stop()
    assert code == 0, output
    assert "Traceback" not in output, output


def test_prefork_workers_each_run_their_own_engine(tmp_path: Path) -> None:
    with (
        upstream(tmp_path) as upstream_url,
        gunicorn(
            ["--preload", "--workers", str(WORKERS), "--worker-class", "sync"],
            {"UPSTREAM_URL": upstream_url, "UPSTREAM_WARMUP": "/echo"},
            tmp_path,
        ) as app,
    ):
        # a sync worker holds one request: WORKERS requests at the rendezvous
        # at once are WORKERS distinct workers
        rounds = [
            _concurrently(app, [f"/rendezvous/{WORKERS}?key={key}"] * WORKERS)
            for key in ("first", "second")
        ]
        master_pid = app.proc.pid
        live = {  # checked while the processes exist
            r["pid"]: (ppid(r["pid"]), has_thread(r["pid"], r["engine_thread"]))
            for r in rounds[0] + rounds[1]
        }
        imported = rounds[0][0]["imported"]
        master_thread_alive = has_thread(master_pid, imported["engine_thread"])
        _assert_clean_exit(app)

    # --preload: the app was imported, and the warm-up request made, in the master
    assert imported["pid"] == master_pid
    assert imported["upstream"]["status"] == 200
    assert master_thread_alive  # the master's engine thread, running when it forked
    master_port = imported["upstream"]["body"]["client_port"]

    first, second = ({r["pid"]: r for r in rnd} for rnd in rounds)
    assert len(first) == WORKERS, f"{len(first)} workers answered {WORKERS} requests at once"
    assert set(second) == set(first)  # the same workers, nobody died
    for pid, answer in first.items():
        assert answer["imported"] == imported  # inherited from the master, not re-imported
        assert answer["upstream"]["status"] == 200
        assert answer["upstream"]["http_version"] == "HTTP/1.1"
        assert live[pid][0] == master_pid  # a worker forked by this master
        assert live[pid][1], f"engine thread {answer['engine_thread']} is not in worker {pid}"
        # the same engine answered both rounds, on the same keep-alive connection
        assert second[pid]["engine_thread"] == answer["engine_thread"]
        port = answer["upstream"]["body"]["client_port"]
        assert second[pid]["upstream"]["body"]["client_port"] == port
    engines = [answer["engine_thread"] for answer in first.values()]
    assert len(set(engines)) == WORKERS  # one engine each
    assert imported["engine_thread"] not in engines  # none of them the master's
    ports = [answer["upstream"]["body"]["client_port"] for answer in first.values()]
    assert len(set(ports)) == WORKERS  # the upstream saw one connection per worker
    assert master_port not in ports  # and none of them the master's


def test_threaded_worker_shares_one_http2_connection(tmp_path: Path) -> None:
    with (
        upstream(tmp_path) as upstream_url,
        gunicorn(
            ["--workers", "1", "--worker-class", "gthread", "--threads", str(THREADS)],
            {"UPSTREAM_URL": upstream_url, "UPSTREAM_H2C": "1"},
            tmp_path,
        ) as app,
    ):
        # all THREADS threads in upstream calls at once, then some more requests
        together = _concurrently(app, [f"/rendezvous/{THREADS}?key=t"] * THREADS)
        more = _concurrently(app, ["/echo"] * THREADS)
        status = app.get("/-/status")
        _assert_clean_exit(app)

    answers = together + more
    assert {a["pid"] for a in answers} == {status["pid"]}  # one worker process
    assert {a["engine_thread"] for a in answers} == {status["engine_thread"]}  # one engine
    assert all(a["upstream"]["status"] == 200 for a in answers)
    assert {a["upstream"]["http_version"] for a in answers} == {"HTTP/2"}
    # the upstream saw one TCP connection, for 16 concurrent callers and after
    assert len({a["upstream"]["body"]["client_port"] for a in answers}) == 1
    assert status["peak_in_flight"] == THREADS
    [connection] = status["connections"]
    assert connection["http_version"] == "HTTP/2"
    assert connection["requests_served"] == 2 * THREADS
    assert connection["origin"] == upstream_url


def test_threaded_worker_one_tls_http2_connection_to_nginx(
    nginx_h2: Nginx, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    marker = f"wsgi-{os.getpid()}-{tmp_path.name}"
    with gunicorn(
        ["--workers", "1", "--worker-class", "gthread", "--threads", str(THREADS)],
        {"UPSTREAM_URL": nginx_h2.url(""), "UPSTREAM_CAFILE": str(ca)},
        tmp_path,
    ) as app:
        answers = _concurrently(app, [f"/small?{marker}-{i}" for i in range(3 * THREADS)])
        status = app.get("/-/status")
        _assert_clean_exit(app)

    assert {a["upstream"]["body"] for a in answers} == {"hello h2\n"}
    assert {a["upstream"]["http_version"] for a in answers} == {"HTTP/2"}  # ALPN h2
    [connection] = status["connections"]
    assert connection["http_version"] == "HTTP/2"
    lines = nginx_h2.log(marker, expect=3 * THREADS)
    assert len(lines) == 3 * THREADS
    assert {line.protocol for line in lines} == {"HTTP/2.0"}
    assert len({line.connection for line in lines}) == 1, "nginx saw several TCP connections"
