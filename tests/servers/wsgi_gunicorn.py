"""gunicorn serving ``examples/wsgi_app.py``, and its upstream, for ``test_wsgi.py``.

Both run on a listening socket the test binds and hands over as ``fd://N``:
the port is known before the server starts and a connection made early waits
in the backlog until a worker accepts it, so nothing polls for readiness.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@contextlib.contextmanager
def on_socket(
    argv: Callable[[int], list[str]], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``argv(fd)`` run on a fresh listening loopback socket; yields (port, process).
    Output goes to ``log``; the process is killed on the way out if still running."""
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as sock, open(log, "wb") as out:
        fd = sock.fileno()
        proc = subprocess.Popen(
            argv(fd),
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        port = sock.getsockname()[1]
    try:
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def upstream(tmp: Path) -> Iterator[str]:
    """``servers/wsgi_upstream.py`` under hypercorn; yields its base URL."""
    with on_socket(
        lambda fd: [sys.executable, "-m", "tests.servers.wsgi_upstream", str(fd)],
        ROOT,
        {},
        tmp / "upstream.log",
    ) as (port, _):
        yield f"http://127.0.0.1:{port}"


@dataclass
class Gunicorn:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, target: str) -> dict[str, Any]:
        """GET ``target`` from the app on a connection of its own; the JSON answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", target)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, (target, response.status, body)
        answer: dict[str, Any] = json.loads(body)
        return answer

    def stop(self) -> tuple[int, str]:
        """SIGTERM (gunicorn's graceful shutdown); its exit code and output."""
        self.proc.terminate()
        code = self.proc.wait(30)
        return code, self.log.read_text(errors="replace")


@contextlib.contextmanager
def gunicorn(args: list[str], env: dict[str, str], tmp: Path) -> Iterator[Gunicorn]:
    """``gunicorn ARGS wsgi_app:app`` in ``examples/`` with ``env`` added."""
    log = tmp / "gunicorn.log"
    with on_socket(
        lambda fd: [
            sys.executable,
            "-m",
            "gunicorn",
            *args,
            "--bind",
            f"fd://{fd}",
            "--graceful-timeout",
            "10",
            "wsgi_app:app",
        ],
        EXAMPLES,
        env,
        log,
    ) as (port, proc):
        yield Gunicorn(port, proc, log)


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat.rsplit(")", 1)[1].split()[1])


def has_thread(pid: int, native_id: int) -> bool:
    """Whether thread ``native_id`` belongs to process ``pid`` (Linux)."""
    return os.path.exists(f"/proc/{pid}/task/{native_id}")
