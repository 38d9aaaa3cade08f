"""Fork: a forked child gets its own default engine and never touches the parent's sockets.

Nothing here forks the pytest process: ``scripts/fork_child.py`` forks inside
its own interpreter, and gunicorn forks its workers in its own processes.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, stop_process, wait_listening
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def test_forked_child_gets_fresh_engine_and_leaves_parent_sockets_alone(
    raw: RawFactory, http_server: HTTPServer
) -> None:
    server = raw(handlers.keepalive_ok)
    big = 3_000_000
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.scripts.fork_child",
            server.url("/"),
            http_server.url("/echo"),
            http_server.url(f"/bytes/{big}"),
        ],
        capture_output=True,
        timeout=30,
        cwd=ROOT,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", proc.stderr.decode()
    report = json.loads(proc.stdout)
    child: dict[str, Any] = report["child"]
    parent: dict[str, Any] = report["parent"]

    # the child: ran to the end, with a fresh default engine started on first use
    assert "error" not in child, child["error"]
    assert child["exit_code"] == 0
    assert child["pid"] != parent["pid"]
    assert child["default_before_use"] == "None"  # nothing inherited: started on first use
    assert child["threads_before_use"] == []  # the parent's engine threads do not exist here
    assert child["new_engine"] and child["engine_alive"]
    assert child["threads_after_use"] == ["httpcore-engine"]
    # the pre-fork default-engine Client, a fresh Client and the async default pool all work
    assert (child["raw_1"], child["raw_2"], child["fresh"], child["async"]) == ("ok",) * 4
    # a Client on an explicit pre-fork Engine cannot use the parent's engine thread
    assert child["explicit"] == "EngineClosed"
    # the child reached hypercorn on its own connection
    assert child["echo_port"] != parent["echo_port_before"]

    # the parent: same engine, its connections still usable after the child ran and exited
    assert parent["same_engine"]
    assert parent["threads"] == ["httpcore-engine", "httpcore-engine"]  # default + explicit
    assert parent["held_total"] == big  # the stream in flight at fork time read to the end
    assert parent["raw_2"] == "ok" and parent["explicit_2"] == "ok"
    assert parent["echo_port_after"] == parent["echo_port_before"]

    # what the raw server saw: which connection each request came in on
    conn_of = {r.target.decode(): r.connection_index for r in server.all_requests()}
    assert set(conn_of) == {
        "/parent-1",
        "/explicit-1",
        "/child-1",
        "/child-2",
        "/child-fresh",
        "/child-async",
        "/parent-2",
        "/explicit-2",
    }
    parent_conns = {conn_of["/parent-1"], conn_of["/explicit-1"]}
    assert len(parent_conns) == 2
    child_conns = {conn_of[t] for t in ("/child-1", "/child-2", "/child-fresh", "/child-async")}
    assert not child_conns & parent_conns, "the child sent a request on a parent's connection"
    assert conn_of["/child-1"] == conn_of["/child-2"]  # the child's own pool reuses its connection
    assert len(child_conns) == 3  # pre-fork Client, fresh Client, async default pool
    assert conn_of["/parent-2"] == conn_of["/parent-1"]  # parent's keep-alive connection survived
    assert conn_of["/explicit-2"] == conn_of["/explicit-1"]
    assert server.accepted == 5


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_gunicorn_preload_workers_share_nothing(http_server: HTTPServer, tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    port = free_port()
    master_report = tmp_path / "master.json"
    log_path = tmp_path / "gunicorn.log"
    workers = 4
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--preload",
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "30",
                "--graceful-timeout",
                "10",
                "--log-level",
                "warning",
                "tests.scripts.gunicorn_app:app",
            ],
            cwd=ROOT,
            env=_env(UPSTREAM_URL=http_server.base_url, MASTER_REPORT=str(master_report)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_listening(port, proc)

            def call(i: int) -> dict[str, Any]:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                try:
                    conn.request("GET", f"/?slow=50&i={i}")
                    response = conn.getresponse()
                    body = response.read()
                    assert response.status == 200, body
                    result: dict[str, Any] = json.loads(body)
                    return result
                finally:
                    conn.close()

            n = 32
            with ThreadPoolExecutor(max_workers=16) as pool:
                results = list(pool.map(call, range(n)))
            master = json.loads(master_report.read_text())
            worker_ppids = {pid: _ppid(pid) for pid in {r["pid"] for r in results}}
        finally:
            stop_process(proc, timeout=20)
    output = log_path.read_text(errors="replace")

    assert master["pid"] == proc.pid  # --preload: the app (and its Client) was made in the master
    assert all(r["status"] == 200 for r in results)
    assert [r["query"] for r in results] == [f"slow=50&i={i}" for i in range(n)]
    pids = set(worker_ppids)
    assert proc.pid not in pids
    assert all(ppid == proc.pid for ppid in worker_ppids.values()), worker_ppids
    assert len(pids) >= 3, f"only {pids} answered {n} concurrent requests"
    # every worker reached the upstream on connections of its own, never the master's
    ports_by_pid: dict[int, set[int]] = {}
    for r in results:
        ports_by_pid.setdefault(r["pid"], set()).add(r["client_port"])
    for pid, ports in ports_by_pid.items():
        assert master["client_port"] not in ports, (pid, ports)
        for other, other_ports in ports_by_pid.items():
            assert other == pid or not ports & other_ports, (pid, other, ports & other_ports)
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
