"""A WSGI app that calls an upstream through one module-level ``httpcore.Client``.

Every request to the app is forwarded as a GET to ``UPSTREAM_URL`` + path +
query, through ``client``, a ``Client`` made once, at import. The app answers
with JSON: its pid, the native id of this process's engine thread, what
happened at import (which pid imported the app) and the upstream's status,
HTTP version and body. ``/-/status`` answers the same ids plus
``client.connections()`` and the peak number of upstream calls in flight at
once.

Serve it with gunicorn, either way::

    # pre-fork: the app (and its Client) is imported once in the master and
    # forked; each worker gets a fresh engine, with connections of its own
    UPSTREAM_URL=http://127.0.0.1:8000 gunicorn --preload --workers 4 --chdir examples wsgi_app:app

    # threaded: 16 threads of one worker share the Client, hence one pool:
    # one HTTP/2 connection to an HTTP/2 upstream
    UPSTREAM_URL=https://api.example UPSTREAM_CAFILE=ca.pem \
        gunicorn --worker-class gthread --threads 16 --chdir examples wsgi_app:app

Environment: ``UPSTREAM_URL`` (default ``http://127.0.0.1:8000``);
``UPSTREAM_H2C=1``: HTTP/2 with prior knowledge to an ``http://`` upstream;
``UPSTREAM_CAFILE``: CA bundle to verify an ``https://`` upstream with;
``UPSTREAM_WARMUP=/path``: make one upstream request at import (in the gunicorn
master with ``--preload``: the master then holds a live engine and connection
when it forks, which the workers must not use).

``python examples/wsgi_app.py [--quick]`` runs both setups against a local
upstream (hypercorn, HTTP/1.1 and h2c, started here) and prints what each
worker saw, then stops gunicorn with SIGTERM and checks it exits cleanly.
Needs gunicorn and hypercorn (``pip install gunicorn hypercorn``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any

import httpcore

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8000").rstrip("/")
_h2c = os.environ.get("UPSTREAM_H2C") == "1"
_cafile = os.environ.get("UPSTREAM_CAFILE")

client = httpcore.Client(
    ssl=ssl.create_default_context(cafile=_cafile) if _cafile else None,
    http1=not _h2c,
    http2=True,
    timeout=10,
)


def engine_thread() -> int | None:
    """The native (kernel) id of this process's engine thread, None before first use.

    A thread id, not ``id(engine)``: object ids repeat across forked processes."""
    ids = [t.native_id for t in threading.enumerate() if t.name == "httpcore-engine"]
    return ids[0] if ids else None


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


_lock = threading.Lock()
_in_flight = 0
_peak_in_flight = 0
_calls = 0


def call_upstream(path_and_query: str) -> dict[str, Any]:
    global _in_flight, _peak_in_flight, _calls
    with _lock:
        _in_flight += 1
        _peak_in_flight = max(_peak_in_flight, _in_flight)
    try:
        response = client.request("GET", UPSTREAM_URL + path_and_query)
    finally:
        with _lock:
            _in_flight -= 1
            _calls += 1
    return {
        "status": response.status_code,
        "http_version": response.http_version,
        "body": _decode(response.body),
    }


# At import: with --preload this runs once, in the gunicorn master, before the fork.
imported: dict[str, Any] = {"pid": os.getpid()}
if os.environ.get("UPSTREAM_WARMUP"):
    imported["upstream"] = call_upstream(os.environ["UPSTREAM_WARMUP"])
    imported["engine_thread"] = engine_thread()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    answer: dict[str, Any] = {"pid": os.getpid()}
    status = "200 OK"
    if path == "/-/status":
        answer["connections"] = [dataclasses.asdict(info) for info in client.connections()]
        with _lock:
            answer.update(peak_in_flight=_peak_in_flight, upstream_calls=_calls)
    else:
        try:
            answer["upstream"] = call_upstream(path + ("?" + query if query else ""))
        except httpcore.HTTPCoreError as exc:
            status = "502 Bad Gateway"
            answer["error"] = f"{type(exc).__name__}: {exc}"
    answer["engine_thread"] = engine_thread()
    answer["imported"] = imported
    body = json.dumps(answer).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


# --------------------------------------------------------------------------
# The demo: a local upstream, then gunicorn both ways.


async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI upstream for the demo: JSON with the client port (which connection)
    and HTTP version, after ``?delay=MS`` milliseconds."""
    if scope["type"] != "http":
        return
    query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    await asyncio.sleep(int(query.get("delay", "0")) / 1000)
    body = json.dumps({"client_port": scope["client"][1], "http_version": scope["http_version"]})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


def _serve_upstream(fd: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{fd}"]  # plain port: HTTP/1.1 and h2c (prior knowledge)
    config.keep_alive_max_requests = 1_000_000_000  # hypercorn's default (1000) sends GOAWAY
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(serve(upstream, config))  # type: ignore[arg-type]


def _demo(quick: bool) -> int:
    import http.client
    import socket
    import subprocess
    import sys
    import tempfile
    from collections import defaultdict
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    here = Path(__file__).resolve().parent
    requests_, delay = (16, 50) if quick else (64, 100)

    def listening() -> socket.socket:
        return socket.create_server(("127.0.0.1", 0), backlog=1024)

    def get(port: int, target: str) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", target)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{target}: {response.status} {body!r}")
            result: dict[str, Any] = json.loads(body)
            return result
        finally:
            conn.close()

    def gunicorn(args: list[str], env: dict[str, str], run: Callable[[int], bool]) -> bool:
        """gunicorn on a socket bound here; ``run(port)``; SIGTERM; a clean exit?"""
        with listening() as sock, tempfile.TemporaryFile() as log:
            fd = sock.fileno()
            argv = [sys.executable, "-m", "gunicorn", *args, "--bind", f"fd://{fd}"]
            argv += ["--log-level", "warning", "wsgi_app:app"]
            proc = subprocess.Popen(
                argv,
                cwd=here,
                env={**os.environ, **env},
                pass_fds=[fd],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                ok = run(sock.getsockname()[1])
            finally:
                proc.terminate()  # SIGTERM: graceful shutdown
                code = proc.wait(30)
            log.seek(0)
            output = log.read().decode(errors="replace")
        clean = code == 0 and "Traceback" not in output
        print(f"  SIGTERM: exit code {code}, {'no traceback' if clean else 'output:'}")
        if not clean:
            print(output)
        return ok and clean

    def prefork(port: int) -> bool:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: get(port, f"/echo?delay={delay}"), range(requests_)))
        master = results[0]["imported"]
        print(
            f"  master pid {master['pid']}: imported the app, engine thread "
            f"{master['engine_thread']}, upstream connection from port "
            f"{master['upstream']['body']['client_port']}"
        )
        by_pid: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in results:
            by_pid[r["pid"]].append(r)
        ports_of: dict[int, set[int]] = {}
        for pid, rs in sorted(by_pid.items()):
            engines = {r["engine_thread"] for r in rs}
            ports_of[pid] = {r["upstream"]["body"]["client_port"] for r in rs}
            print(
                f"  worker pid {pid}: engine thread {', '.join(map(str, engines))}, "
                f"{len(rs)} requests, upstream connections from ports {sorted(ports_of[pid])}"
            )
        engines = {r["engine_thread"] for r in results}
        every_port = [p for ports in ports_of.values() for p in ports]
        shared = len(every_port) != len(set(every_port))
        master_port = master["upstream"]["body"]["client_port"]
        print(
            f"  -> {len(by_pid)} workers, {len(engines)} engine threads, none the master's; "
            f"upstream connections shared between processes: {'yes' if shared else 'none'}"
        )
        return (
            len(engines) == len(by_pid) >= 2
            and master["engine_thread"] not in engines
            and master["pid"] not in by_pid
            and not shared
            and master_port not in every_port
        )

    def threaded(port: int) -> bool:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: get(port, f"/echo?delay={delay}"), range(requests_)))
        status = get(port, "/-/status")
        ports = {r["upstream"]["body"]["client_port"] for r in results}
        versions = {r["upstream"]["http_version"] for r in results}
        pids = {r["pid"] for r in results}
        print(
            f"  worker pid {', '.join(map(str, pids))}: engine thread {status['engine_thread']}, "
            f"{len(results)} requests ({', '.join(sorted(versions))}), peak "
            f"{status['peak_in_flight']} upstream calls in flight at once"
        )
        print(f"  client.connections(): {len(status['connections'])}")
        for info in status["connections"]:
            print(f"    {httpcore.ConnectionInfo(**info)}")
        print(f"  the upstream saw connections from ports {sorted(ports)}")
        return (
            len(status["connections"]) == 1
            and versions == {"HTTP/2"}
            and len(ports) == 1
            and status["peak_in_flight"] > 1
        )

    with listening() as sock:
        upstream_port = sock.getsockname()[1]
        fd = sock.fileno()
        argv = [sys.executable, __file__, "--serve-upstream", str(fd)]
        upstream_proc = subprocess.Popen(argv, pass_fds=[fd])
    try:
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        print(f"upstream: hypercorn on {upstream_url} (HTTP/1.1 and h2c), answers after {delay} ms")
        with httpcore.Client() as probe:  # hypercorn may still be starting: wait for it
            probe.request("GET", upstream_url + "/echo", timeout=30)
        print(
            f"\n[pre-fork] gunicorn --preload --workers 4 (sync workers), "
            f"{requests_} requests from 16 threads, HTTP/1.1 upstream"
        )
        ok = gunicorn(
            ["--preload", "--workers", "4", "--worker-class", "sync"],
            {"UPSTREAM_URL": upstream_url, "UPSTREAM_WARMUP": "/echo"},
            prefork,
        )
        print(
            f"\n[threaded] gunicorn --worker-class gthread --threads 16, "
            f"{requests_} requests from 16 threads, HTTP/2 upstream (h2c)"
        )
        ok = (
            gunicorn(
                ["--workers", "1", "--worker-class", "gthread", "--threads", "16"],
                {"UPSTREAM_URL": upstream_url, "UPSTREAM_H2C": "1"},
                threaded,
            )
            and ok
        )
    finally:
        upstream_proc.terminate()
        upstream_proc.wait(10)
    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 requests per setup, not 64")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream is not None:
        _serve_upstream(args.serve_upstream)
        sys.exit(0)
    sys.exit(_demo(args.quick))
