"""Gateway benchmark: examples/gateway on our PoolManager vs the same gateway on aiohttp
and on httpx, and vs nginx proxy_pass, all in front of the same upstream nginx.

    bash benchmarks/run.sh --gateway [--quick] [--only small,big,h2up,h2down] [--profile]

CPU 0: the upstream nginx and the load generator (wrk, h2load). CPU 1: the gateway
process alone. Standard library only; it reuses harness.py's helpers (venvs, TLS
certificate, pinning, environment) and writes under benchmarks/.work/.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H

HERE = H.HERE
ROOT = H.ROOT
WORK = H.WORK
GW = WORK / "gateway"  # this benchmark's files: configs, logs, nginx prefixes
LOAD_CPU = H.SERVER_CPU  # upstream nginx + wrk/h2load
GATEWAY_CPU = H.CLIENT_CPU  # the gateway process alone
BIG = 2**20
SMALL_BODY = b"hello world\n"

# Ours and aiohttp share a venv (aiohttp is only imported for --client aiohttp);
# httpx runs in the encode venv, where `import httpcore` is encode's package.
GATEWAY_VENV = H.Venv(
    "gateway", ("aiohttp", "uvicorn[standard]", "hypercorn", "py-spy", "janus"), editable=True
)
ENCODE_EXTRAS = ("httpx", "h2", "uvicorn[standard]")
ENCODE_MARKER = ".bench-gateway-ok"
# anyio >= 4.11 no longer pulls in sniffio, and encode's httpcore 1.0.9 then retries
# `import sniffio` (a failed import: a sys.path scan) in every AsyncLock/AsyncEvent
# setup (encode/httpcore discussion 1102, PR 1103). The "httpx" row runs what
# `pip install httpx` gives; "httpx+sniffio" adds sniffio from this directory on
# PYTHONPATH (the encode venv itself is left as the main harness uses it).
SNIFFIO_DIR = GW / "sniffio-path"

log = H.log

# ---------------------------------------------------------------------------- nginx

COMMON = H.NGINX_MAIN

TEMP_PATHS = """\
    client_body_temp_path {n}/tmp/body;
    proxy_temp_path {n}/tmp/proxy;
    fastcgi_temp_path {n}/tmp/fastcgi;
    uwsgi_temp_path {n}/tmp/uwsgi;
    scgi_temp_path {n}/tmp/scgi;
"""

# Every path ending in /small or /1m, so that the gateway's route prefixes
# (/h2c/..., /tls/...) reach the same content.
LOCATIONS = """\
        location ~ /small$ {{ default_type text/plain; return 200 "hello world\\n"; }}
        location ~ /1m$ {{ root {www}; try_files /1m.bin =404; }}
"""

UPSTREAM_CONF = COMMON + """\
http {{
    access_log off;
""" + TEMP_PATHS + """\
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 600s;
    keepalive_requests 1000000000;
    default_type application/octet-stream;
    http2_max_concurrent_streams 128;

    server {{  # HTTP/1.1
        listen 127.0.0.1:{h1} backlog=4096;
        location = /nginx_status {{ stub_status; }}
{locations}    }}
    server {{  # h2c: HTTP/2 with prior knowledge
        listen 127.0.0.1:{h2c} http2 backlog=4096;
{locations}    }}
    server {{  # TLS, ALPN h2 / http/1.1
        listen 127.0.0.1:{tls} ssl http2 backlog=4096;
        ssl_certificate {w}/tls/server.pem;
        ssl_certificate_key {w}/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
{locations}    }}
}}
"""

PROXY_CONF = COMMON + """\
http {{
    access_log off;
""" + TEMP_PATHS + """\
    tcp_nodelay on;
    keepalive_timeout 600s;
    keepalive_requests 1000000000;
    upstream up {{
        server 127.0.0.1:{h1};
        keepalive 100;
        keepalive_requests 1000000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_version() -> str:
    r = subprocess.run([nginx_bin(), "-v"], capture_output=True, text=True)
    return r.stderr.strip().split("/")[-1]


def start_nginx(name: str, conf_text: str, cpu: str, port: int) -> subprocess.Popen[bytes]:
    n = GW / name
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (n / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    conf = n / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(conf_text.replace("{user}", user).replace("{n}", str(n)))
    errlog = str(n / "error.log")
    subprocess.run([nginx_bin(), "-t", "-q", "-e", errlog, "-p", str(n), "-c", str(conf)],
                   check=True)
    proc = subprocess.Popen([*H.taskset(cpu), nginx_bin(), "-e", errlog, "-p", str(n),
                             "-c", str(conf)], stdin=subprocess.DEVNULL, start_new_session=True)
    wait_http(port, "/small", proc, f"nginx {name}", errlog)
    return proc


def stop_nginx(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], what: str,
              logfile: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}); see {logfile}")
        try:
            status, _ = http_get(port, path, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer on port {port}; see {logfile}")
        time.sleep(0.1)


@dataclass
class Upstream:
    h1: int
    h2c: int
    tls: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        www = GW / "www"
        www.mkdir(parents=True, exist_ok=True)
        big = www / "1m.bin"
        if not big.exists() or big.stat().st_size != BIG:
            big.write_bytes(os.urandom(BIG))
        locations = LOCATIONS.format(www=www)
        text = UPSTREAM_CONF.format(user="{user}", n="{n}", w=WORK, h1=self.h1, h2c=self.h2c,
                                    tls=self.tls, locations=locations)
        self.proc = start_nginx("upstream", text, LOAD_CPU, self.h1)
        log(f"upstream nginx up: HTTP/1.1 :{self.h1}, h2c :{self.h2c}, TLS h2 :{self.tls} "
            f"(CPU {LOAD_CPU})")

    def accepted(self) -> int:
        _, body = http_get(self.h1, "/nginx_status")
        return int(body.split(b"\n")[2].split()[0])

    def stop(self) -> None:
        stop_nginx(self.proc)
        self.proc = None


# ---------------------------------------------------------------------------- gateways


@dataclass
class Gateway:
    """One gateway process (tree), started once and reused by every row that names it."""

    name: str
    kind: str  # "python" or "nginx"
    client: str = ""
    server: str = "uvicorn"
    venv: H.Venv | None = None
    env: tuple[tuple[str, str], ...] = ()
    extra_path: tuple[Path, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    error: str | None = None

    @property
    def logfile(self) -> Path:
        return GW / "logs" / f"{self.name}.log"

    def start(self, upstream: Upstream, config: Path) -> None:
        self.port = H.free_port()
        if self.kind == "nginx":
            text = PROXY_CONF.format(user="{user}", n="{n}", h1=upstream.h1, port=self.port)
            self.proc = start_nginx("proxy", text, GATEWAY_CPU, self.port)
            return
        assert self.venv is not None
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "hello":
            (GW / "hello_app.py").write_text(HELLO_APP)
            cmd = [*H.taskset(GATEWAY_CPU), str(self.venv.python), "-m", "uvicorn",
                   "hello_app:app", "--app-dir", str(GW), "--port", str(self.port),
                   "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                   "--log-level", "warning", "--no-server-header", "--no-date-header"]
        else:
            cmd = [*H.taskset(GATEWAY_CPU), str(self.venv.python), "-m", "examples.gateway",
                   "--config", str(config), "--port", str(self.port), "--client", self.client,
                   "--server", self.server, "--no-access-log"]
        path = os.pathsep.join(str(d) for d in (import_dir(), *self.extra_path))
        env = H.bench_env({"PYTHONPATH": path, **dict(self.env)})
        with open(self.logfile, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=WORK, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_http(self.port, "/-/status", self.proc, f"gateway {self.name}", str(self.logfile))

    def pids(self) -> list[int]:
        """The process and its descendants (hypercorn and nginx run a child)."""
        if self.proc is None:
            return []
        children: dict[int, list[int]] = defaultdict(list)
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = Path(f"/proc/{d}/stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(d))
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, ()))
        return out

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.kind == "nginx":
            stop_nginx(self.proc)
        elif self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.proc = None

    def log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


HELLO_APP = """\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")]})
    await send({"type": "http.response.body", "body": b"hello world\\n"})
"""


def import_dir() -> Path:
    """A directory holding only `examples` (a symlink): on PYTHONPATH it makes
    `examples.gateway` importable without putting the repository's `httpcore`
    in front of encode's in the httpx venv."""
    d = GW / "pythonpath"
    d.mkdir(parents=True, exist_ok=True)
    link = d / "examples"
    if not link.is_symlink():
        link.symlink_to(ROOT / "examples")
    return d


GATEWAYS = {
    g.name: g
    for g in (
        # The gateway's default: Engine.hosted(), the engine on uvicorn's own loop.
        Gateway("ours", "python", "httpcore", venv=GATEWAY_VENV),
        # The engine on its own thread (asyncio loop, then uvloop): one thread hop
        # each way per request.
        Gateway("ours-thread", "python", "httpcore", venv=GATEWAY_VENV,
                env=(("GATEWAY_ENGINE", "thread"),)),
        Gateway("ours-thread-uvloop", "python", "httpcore", venv=GATEWAY_VENV,
                env=(("GATEWAY_ENGINE", "thread"), ("HTTPCORE_LOOP", "uvloop"))),
        # No upstream at all: the same uvicorn answering 12 bytes itself, the
        # ceiling of any Python gateway on it.
        Gateway("uvicorn-hello", "hello", venv=GATEWAY_VENV),
        Gateway("aiohttp", "python", "aiohttp", venv=GATEWAY_VENV),
        Gateway("httpx", "python", "httpx", venv=H.VENVS["encode"]),
        Gateway("httpx+sniffio", "python", "httpx", venv=H.VENVS["encode"],
                extra_path=(SNIFFIO_DIR,)),
        Gateway("nginx", "nginx"),
        Gateway("ours-hypercorn", "python", "httpcore", "hypercorn", venv=GATEWAY_VENV),
        Gateway("aiohttp-hypercorn", "python", "aiohttp", "hypercorn", venv=GATEWAY_VENV),
    )
}


def routes_toml(upstream: Upstream, cafile: Path) -> Path:
    path = GW / "routes.toml"
    path.write_text(f"""\
# HTTP/1.1 upstream: /small, /1m
[[route]]
prefix = "/"
upstreams = ["http://127.0.0.1:{upstream.h1}"]
protocol = "http1"

# HTTP/2 with prior knowledge: /h2c/small
[[route]]
prefix = "/h2c"
upstreams = ["http://127.0.0.1:{upstream.h2c}"]
protocol = "h2c"

# TLS, HTTP/2 by ALPN: /tls/small
[[route]]
prefix = "/tls"
upstreams = ["https://127.0.0.1:{upstream.tls}"]
protocol = "auto"
ca_file = "{cafile}"

# TLS, HTTP/1.1 only: /tls1/small (aiohttp's like-for-like row for ours' TLS HTTP/2)
[[route]]
prefix = "/tls1"
upstreams = ["https://127.0.0.1:{upstream.tls}"]
protocol = "http1"
ca_file = "{cafile}"
""")
    return path


# ---------------------------------------------------------------------------- CPU accounting


def cpu_snapshot(pids: list[int]) -> dict[tuple[int, int], tuple[int, int]]:
    """(pid, tid) -> (ns on CPU, context switches) for every thread of the processes."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tids:
            base = f"/proc/{pid}/task/{t}"
            try:
                ns = int(Path(f"{base}/schedstat").read_text().split()[0])
                status = Path(f"{base}/status").read_text()
            except (OSError, ValueError, IndexError):
                continue
            cs = sum(int(m) for m in re.findall(r"ctxt_switches:\s+(\d+)", status))
            out[(pid, int(t))] = (ns, cs)
    return out


def cpu_delta(before: dict, after: dict) -> dict[str, float]:
    """Seconds on CPU: the processes' main threads, their other threads (our engine),
    the busiest other thread; and context switches."""
    main = other = busiest = 0.0
    switches = 0
    for key, (ns, cs) in after.items():
        ns0, cs0 = before.get(key, (0, 0))
        d = (ns - ns0) / 1e9
        switches += cs - cs0
        pid, tid = key
        if pid == tid:
            main += d
        else:
            other += d
            busiest = max(busiest, d)
    return {"main": main, "other": other, "busiest_other": busiest, "switches": switches}


# ---------------------------------------------------------------------------- load generators

WRK_LUA = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


def wrk(port: int, path: str, connections: int, duration: float) -> dict:
    lua = GW / "report.lua"
    if not lua.exists():
        lua.write_text(WRK_LUA)
    cmd = [*H.taskset(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
           "--latency", "--timeout", "10s", "-s", str(lua), f"http://127.0.0.1:{port}{path}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({r.returncode}): {(r.stderr or r.stdout)[-300:]}")
    res = json.loads(lines[-1])
    res["errors"] = sum(res[k] for k in ("connect", "read", "write", "status", "timeout"))
    res["rate"] = res["requests"] / (res["duration_us"] / 1e6)
    res["elapsed"] = res["duration_us"] / 1e6
    return res


def h2load(port: int, path: str, clients: int, streams: int, duration: float) -> dict:
    cmd = [*H.taskset(LOAD_CPU), "h2load", "-t1", f"-c{clients}", f"-m{streams}",
           "-D", str(max(1, round(duration))), "--warm-up-time", "500ms",
           f"http://127.0.0.1:{port}{path}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = r.stdout
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    q = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if r.returncode != 0 or not (m and q and s):
        raise RuntimeError(f"h2load failed ({r.returncode}): {(r.stderr or out)[-300:]}")
    proto = re.search(r"Application protocol: (\S+)", out)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    done = int(q.group(3))
    errors = int(q.group(5)) + int(q.group(6)) + int(q.group(7)) + int(s.group(4)) + \
        int(s.group(3))
    return {
        "requests": done, "rate": float(m.group(2)), "elapsed": float(m.group(1)),
        "errors": errors, "protocol": proto.group(1) if proto else "?",
        "mean_us": to_us(lat.group(3)) if lat else None,
    }


def to_us(s: str) -> float:
    for unit, f in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * f
    return float(s)


# ---------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class RowSpec:
    name: str
    gateway: str
    path: str
    ours: bool = False
    note: str = ""


@dataclass(frozen=True)
class Target:
    peer: str
    bound: float
    metric: str = "rate"  # or "p99"
    lower_is_better: bool = False
    ours: str | None = None  # judges this row of ours only (None: every row of ours)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    tool: str  # wrk or h2load
    rows: tuple[RowSpec, ...]
    targets: tuple[Target, ...]
    connections: int = 100
    streams: int = 1
    unit: str = "req/s"
    expect: int = len(SMALL_BODY)
    one_connection: tuple[str, ...] = ()  # rows that must use exactly 1 upstream connection


def scenarios(big_conns: int) -> dict[str, Scenario]:
    return {s.key: s for s in (
        Scenario(
            "small", "12-byte responses, HTTP/1.1 upstream, wrk -t1 -c100 (HTTP/1.1 downstream)",
            "wrk",
            (RowSpec("ours", "ours", "/small", True, "Engine.hosted() (the default)"),
             RowSpec("ours-thread", "ours-thread", "/small", True,
                     "GATEWAY_ENGINE=thread: engine thread, asyncio"),
             RowSpec("ours-thr-uvloop", "ours-thread-uvloop", "/small", True,
                     "engine thread on uvloop"),
             RowSpec("aiohttp", "aiohttp", "/small"),
             RowSpec("httpx", "httpx", "/small", False, "no sniffio, as pip installs it"),
             RowSpec("httpx+sniffio", "httpx+sniffio", "/small"),
             RowSpec("nginx", "nginx", "/small"),
             RowSpec("uvicorn-hello", "uvicorn-hello", "/small", False,
                     "reference: uvicorn answers itself, no upstream")),
            (Target("aiohttp", 1.5), Target("httpx", 3.0), Target("httpx+sniffio", 3.0),
             Target("nginx", 0.3),
             Target("aiohttp", 1.0, "p99", True)),
        ),
        Scenario(
            "big", f"1 MiB responses, HTTP/1.1 upstream, wrk -t1 -c{big_conns}", "wrk",
            (RowSpec("ours", "ours", "/1m", True),
             RowSpec("aiohttp", "aiohttp", "/1m"),
             RowSpec("httpx+sniffio", "httpx+sniffio", "/1m"),
             RowSpec("nginx", "nginx", "/1m")),
            (Target("aiohttp", 1.0), Target("nginx", 0.5)),
            connections=big_conns, unit="MB/s", expect=BIG,
        ),
        Scenario(
            "h2up", "12-byte responses, ours over HTTP/2 upstream (1 connection) vs aiohttp "
            "over HTTP/1.1 (up to 100), wrk -t1 -c100", "wrk",
            (RowSpec("ours-h2c", "ours", "/h2c/small", True, "h2c prior knowledge"),
             RowSpec("ours-h2-tls", "ours", "/tls/small", True, "TLS, ALPN h2, ca_file"),
             RowSpec("aiohttp", "aiohttp", "/small"),
             RowSpec("aiohttp-tls", "aiohttp", "/tls1/small", False,
                     "TLS, HTTP/1.1, ca_file: the like-for-like peer of ours-h2-tls")),
            (Target("aiohttp", 1.5, ours="ours-h2c"),
             Target("aiohttp-tls", 1.5, ours="ours-h2-tls")),
            one_connection=("ours-h2c", "ours-h2-tls"),
        ),
        Scenario(
            "h2down", "12-byte responses, HTTP/2 downstream: hypercorn h2c, h2load -t1 -c10 "
            "-m10; HTTP/1.1 upstream", "h2load",
            (RowSpec("ours", "ours-hypercorn", "/small", True),
             RowSpec("aiohttp", "aiohttp-hypercorn", "/small")),
            (), connections=10, streams=10,
        ),
    )}


@dataclass
class Row:
    spec: RowSpec
    runs: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    upconns: int = 0
    errors: int = 0
    info: dict[str, object] = field(default_factory=dict)

    def median(self, key: str) -> float | None:
        vals = [r[key] for r in self.runs if r.get(key) is not None]
        return statistics.median(vals) if vals else None


def load_run(sc: Scenario, row: Row, gw: Gateway, duration: float) -> dict:
    if sc.tool == "wrk":
        return wrk(gw.port, row.spec.path, sc.connections, duration)
    return h2load(gw.port, row.spec.path, sc.connections, sc.streams, duration)


def measure(sc: Scenario, row: Row, gw: Gateway, upstream: Upstream, duration: float,
            record: bool = True, rewarm: float = 0) -> dict | None:
    """One run. ``rewarm``: seconds of load first, unmeasured, so that upstream
    connections the pools let expire while other rows ran (ours and httpx keep
    idle ones 5 s, aiohttp 15 s) are open again before measuring."""
    if rewarm and sc.tool == "wrk":  # h2load has its own --warm-up-time
        try:
            load_run(sc, row, gw, rewarm)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # the measured run will say
    pids = gw.pids()
    acc0 = upstream.accepted()
    cpu0 = cpu_snapshot(pids)
    t0 = time.monotonic()
    try:
        res = load_run(sc, row, gw, duration)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        row.failures.append(str(exc))
        log(f"  {sc.key} {row.spec.name}: FAILED {exc}")
        return None
    wall = time.monotonic() - t0
    cpu = cpu_delta(cpu0, cpu_snapshot(pids))
    held = held_connections(pids, upstream_port(row.spec, upstream))
    new = upstream.accepted() - acc0 - 1  # minus the second status request
    row.upconns += new
    if gw.proc is not None and gw.proc.poll() is not None:
        row.failures.append(f"gateway exited: {gw.log_tail()}")
        return None
    if not record:
        return res
    row.errors += res["errors"]
    if res["errors"] * 100 > max(1, res["requests"]):
        row.failures.append(f"{res['errors']} errors in {res['requests']} requests")
        log(f"  {sc.key} {row.spec.name}: {res['errors']} errors / {res['requests']}")
        return None
    busy = cpu["main"] + cpu["other"]
    n = max(1, res["requests"])
    # h2load's count excludes its warm-up: per-request CPU is CPU share / rate.
    res.update({
        "cpu_pct": 100 * busy / wall,
        "cpu_us": 1e6 * busy / wall / res["rate"] if res["rate"] else None,
        "main_us": 1e6 * cpu["main"] / wall / res["rate"] if res["rate"] else None,
        "other_us": 1e6 * cpu["other"] / wall / res["rate"] if res["rate"] else None,
        "switches": cpu["switches"] / n if sc.tool == "wrk" else
        cpu["switches"] / wall / res["rate"],
        "p99": res["p99_us"] / 1000 if "p99_us" in res else None,
        "held": held,
        "new_conns": new,
    })
    if sc.unit == "MB/s":
        res["value"] = res["rate"] * sc.expect / 1e6
    else:
        res["value"] = res["rate"]
    row.runs.append(res)
    extra = f" p99 {res['p99']:.2f}ms" if res.get("p99") is not None else ""
    if row.spec.ours and "pool" not in row.info:
        row.info["pool"] = pool_summary(gw, upstream_port(row.spec, upstream))
    log(f"  {sc.key} {row.spec.name:16} {res['value']:10.1f} {sc.unit}{extra} "
        f"cpu {res['cpu_pct']:.0f}% upstream conns {held} held, {new} new"
        + (f" errors={res['errors']}" if res["errors"] else ""))
    return res


def upstream_port(spec: RowSpec, upstream: Upstream) -> int:
    if spec.path.startswith("/h2c/"):
        return upstream.h2c
    if spec.path.startswith(("/tls/", "/tls1/")):
        return upstream.tls
    return upstream.h1


def held_connections(pids: list[int], port: int) -> int:
    """Established TCP connections these processes hold to 127.0.0.1:port."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # sl local_address rem_address st ... inode (field 9)
            if f[3] == "01" and int(f[2].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
                n += 1
    return n


def check(sc: Scenario, row: Row, gw: Gateway) -> bool:
    try:
        status, body = http_get(gw.port, row.spec.path)
    except OSError as exc:
        row.failures.append(f"check: {exc}")
        return False
    ok = status == 200 and len(body) == sc.expect and (sc.expect != len(SMALL_BODY)
                                                        or body == SMALL_BODY)
    if not ok:
        row.failures.append(f"check: {status} {body[:80]!r}")
        log(f"  {sc.key} {row.spec.name}: check failed: {status} {body[:120]!r} "
            f"(gateway log: {gw.logfile})")
    return ok


def pool_summary(gw: Gateway, port: int) -> str | None:
    """Our gateway's /-/status: the connections of its pools to this upstream port."""
    try:
        status, body = http_get(gw.port, "/-/status")
        conns = json.loads(body).get("connections", [])
    except (OSError, ValueError):
        return None
    mine = [c for c in conns if c.get("origin", "").endswith(f":{port}")]
    if status != 200 or not conns:
        return None
    kinds = Counter(c.get("http_version") for c in mine)
    return ", ".join(f"{n} {v}" for v, n in kinds.items()) or "none"


def run_scenario(sc: Scenario, rows: list[RowSpec], upstream: Upstream, config: Path,
                 rounds: int, duration: float, warmup: float,
                 rewarm: float) -> dict[str, Row]:
    out = {spec.name: Row(spec) for spec in rows}
    log(f"({sc.key}) {sc.title}: {', '.join(out)}; {rounds} rounds x {duration:g}s")
    live = []
    for row in out.values():
        gw = GATEWAYS[row.spec.gateway]
        if gw.proc is None and gw.error is None:
            try:
                gw.start(upstream, config)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                gw.error = str(exc)
                log(f"  gateway {gw.name}: {exc}: {gw.log_tail()}")
        if gw.error is not None:
            row.failures.append(f"gateway did not start: {gw.log_tail() or gw.error}")
            continue
        acc0 = upstream.accepted()
        if not check(sc, row, gw):
            continue
        row.upconns += upstream.accepted() - acc0 - 1
        measure(sc, row, gw, upstream, warmup, record=False)  # warm-up: connections, caches
        live.append(row)
    for i in range(rounds):
        log(f" round {i + 1}/{rounds}")
        for row in live:  # A B C ... A B C ...
            measure(sc, row, GATEWAYS[row.spec.gateway], upstream, duration, rewarm=rewarm)
    return out


# ---------------------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    if digits:
        return f"{x:,.{digits}f}"
    return H.fmt(x)


def verdict(t: Target, ratio: float) -> str:
    ok = ratio <= t.bound if t.lower_is_better else ratio >= t.bound
    return f"{'ok' if ok else 'LOW' if not t.lower_is_better else 'HIGH'}" \
           f"{'<=' if t.lower_is_better else '>='}{t.bound:g}"


def table(sc: Scenario, rows: dict[str, Row]) -> tuple[list[str], dict]:
    ours = [n for n, r in rows.items() if r.spec.ours and r.median("value") is not None]
    has_p99 = sc.tool == "wrk"
    out = [f"({sc.key}) {sc.title}  [{sc.unit}, median of rounds]"]
    head = f"  {'row':16} {'median':>9} {'min':>9} {'max':>9}"
    head += f" {'p99 ms':>7}" if has_p99 else f" {'mean ms':>7}"
    head += f" {'gw CPU':>7} {'up conns':>8}"
    for o in ours:
        head += f" {o + '/peer':>16}"
    out.append(head)
    rate_targets = {(t.peer, t.ours): t for t in sc.targets if t.metric == "rate"}
    p99_targets = {t.peer: t for t in sc.targets if t.metric == "p99"}
    ratios: dict[str, dict[str, float]] = {}
    problems: dict[str, list[str]] = {}
    for o in ours:
        if o in sc.one_connection:
            r = rows[o]
            held = max(x["held"] for x in r.runs)
            if held != 1:
                problems.setdefault(o, []).append(f"{held} upstream connections, not 1")
            pool = str(r.info.get("pool") or "")
            if pool != "1 HTTP/2":
                problems.setdefault(o, []).append(f"pool: {pool or 'unknown'}, not 1 HTTP/2")
    for name, row in rows.items():
        vals = [r["value"] for r in row.runs]
        m = row.median("value")
        held = max((r["held"] for r in row.runs), default=None)
        new = max((r["new_conns"] for r in row.runs), default=None)
        conns = f"{held}/{new}" if held is not None else "-"
        lat = row.median("p99") if has_p99 else (
            row.median("mean_us") / 1000 if row.median("mean_us") else None)
        cpu = row.median("cpu_pct")
        line = (f"  {name:16} {fmt(m):>9} {fmt(min(vals) if vals else None):>9} "
                f"{fmt(max(vals) if vals else None):>9} {fmt(lat, 2):>7} "
                f"{(f'{cpu:.0f}%' if cpu is not None else '-'):>7} {conns:>8}")
        if not row.spec.ours:
            for o in ours:
                om = rows[o].median("value")
                cell = "-"
                if m and om:
                    ratio = om / m
                    ratios.setdefault(o, {})[name] = ratio
                    cell = f"{ratio:.2f}x"
                    t = rate_targets.get((name, None)) or rate_targets.get((name, o))
                    if t is not None:
                        cell += " " + ("BAD" if problems.get(o) else verdict(t, ratio))
                line += f" {cell:>16}"
        notes = []
        if row.spec.note:
            notes.append(row.spec.note)
        if row.errors:
            notes.append(f"errors={row.errors}")
        if row.failures:
            notes.append(f"{len(row.failures)} failed: {row.failures[-1][:90]}")
        if cpu is not None and cpu < 90:
            notes.append("gateway not saturated: CPU 0 (load generator + upstream) limits")
        if row.info.get("pool"):
            notes.append(f"pool: {row.info['pool']}")
        protos = {r.get("protocol") for r in row.runs if r.get("protocol")}
        if protos:
            notes.append("downstream " + "/".join(sorted(protos)))
        notes += [f"WRONG: {p}" for p in problems.get(name, ())]
        if notes:
            line += "  " + "; ".join(notes)
        out.append(line)
    # p99 latency: lower is better, ratio ours/peer <= bound.
    for peer, t in p99_targets.items():
        pm = rows[peer].median("p99") if peer in rows else None
        for o in ours:
            om = rows[o].median("p99")
            if pm and om:
                ratio = om / pm
                ratios.setdefault(o, {})[f"p99/{peer}"] = ratio
                out.append(f"  p99 latency {o}/{peer}: {om:.2f} / {pm:.2f} ms = {ratio:.2f}x "
                           f"{verdict(t, ratio)}")
    data = {
        "title": sc.title,
        "unit": sc.unit,
        "targets": [t.__dict__ for t in sc.targets],
        "results": {n: {"median": r.median("value"), "runs": r.runs, "upconns": r.upconns,
                        "errors": r.errors, "failures": r.failures, "info": r.info}
                    for n, r in rows.items()},
        "ratios": ratios,
        "problems": problems,
    }
    return out, data


def cpu_table(all_rows: dict[str, dict[str, Row]]) -> list[str]:
    out = ["(cpu) where the gateway's CPU goes  [median of rounds; us of CPU per request; "
           "'main' = the server's loop thread (a hosted engine runs there too), "
           "'engine' = all other threads (an engine thread)]",
           f"  {'scenario/row':22} {'gw CPU':>7} {'us/req':>7} {'main':>7} {'engine':>7} "
           f"{'ctxsw/req':>9}"]
    for key, rows in all_rows.items():
        if key == "big":
            continue
        for name, row in rows.items():
            if not row.runs:
                continue
            cpu = row.median("cpu_pct")
            out.append(f"  {key + '/' + name:22} {cpu:6.0f}% {fmt(row.median('cpu_us'), 1):>7} "
                       f"{fmt(row.median('main_us'), 1):>7} {fmt(row.median('other_us'), 1):>7} "
                       f"{fmt(row.median('switches'), 2):>9}")
    return out


# ---------------------------------------------------------------------------- profiles


def pyspy_profile(sc: Scenario, row: RowSpec, upstream: Upstream, duration: float) -> list[str]:
    gw = GATEWAYS[row.gateway]
    pyspy = GATEWAY_VENV.path / "bin" / "py-spy"
    if gw.proc is None or gw.kind != "python" or not pyspy.exists():
        return []
    raw = GW / f"profile-{sc.key}-{row.name}.txt"
    pid = gw.pids()[-1]  # uvicorn: the process itself; hypercorn: its worker
    secs = max(2, round(duration))
    spy = subprocess.Popen([*H.taskset(LOAD_CPU), str(pyspy), "record", "--pid", str(pid),
                            "--duration", str(secs + 1), "--rate", "200", "--native",
                            "--threads", "--format", "raw", "--output", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)
    try:
        if sc.tool == "wrk":
            wrk(gw.port, row.path, sc.connections, secs)
        else:
            h2load(gw.port, row.path, sc.connections, sc.streams, secs)
    except RuntimeError as exc:
        log(f"  profile {row.name}: load failed: {exc}")
    try:
        _, err = spy.communicate(timeout=secs + 30)
    except subprocess.TimeoutExpired:
        spy.kill()
        err = "timeout"
    if not raw.exists():
        return [f"  {sc.key}/{row.name}: py-spy failed: {(err or '').strip()[-200:]}"]
    return summarize_raw(raw, f"{sc.key}/{row.name}")


def summarize_raw(path: Path, label: str) -> list[str]:
    threads: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = defaultdict(Counter)
    incl: dict[str, Counter[str]] = defaultdict(Counter)
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread ")), "?")
        frames = [f for f in frames if not f.startswith(("thread ", "process "))]
        if frames and is_wait(frames[-1]):
            idle += count  # a thread blocked in the kernel, not on the CPU
            continue
        total += count
        threads[thread] += count
        if frames:
            leaves[thread][short(frames[-1])] += count
        for f in set(short(f) for f in frames):
            incl[thread][f] += count
    if not total:
        return [f"  {label}: no samples"]
    out = [f"  {label}: {total} busy samples, {idle} waiting ones dropped ({path})"]
    for thread, n in threads.most_common(3):
        out.append(f"    {thread}: {100 * n / total:.0f}% of samples; top own time:")
        for f, c in leaves[thread].most_common(8):
            out.append(f"      {100 * c / total:5.1f}%  {f}")
        keys = [f for f, _ in incl[thread].most_common(60)
                if any(k in f for k in ("_http", "_forward", "_relay", "send", "request",
                                         "_drain", "submit", "chunks", "stream"))][:8]
        if keys:
            out.append("      inclusive: " + ", ".join(
                f"{f} {100 * incl[thread][f] / total:.0f}%" for f in keys))
    return out


WAITS = ("epoll_wait", "epoll_pwait", "poll", "select", "futex", "sem_wait", "sem_timedwait",
         "pthread_cond_wait", "pthread_cond_timedwait", "nanosleep", "clock_nanosleep",
         "do_futex_wait", "__futex_abstimed_wait_common", "accept", "accept4")


def is_wait(frame: str) -> bool:
    name = frame.split(" (", 1)[0]
    # Unsymbolized libc addresses under a lock or queue wait are futex calls.
    return name in WAITS or (name.startswith("0x") and "libc" in frame)


def short(frame: str) -> str:
    # "name (path/to/file.py:123)" -> "name (file.py:123)"
    m = re.match(r"(.*) \((.*)\)$", frame)
    if not m:
        return frame
    return f"{m.group(1)} ({Path(m.group(2)).name})"


# ---------------------------------------------------------------------------- setup


def ensure_venvs(skip: bool) -> dict[str, str | None]:
    """Venv name -> None when ready, else why not."""
    state: dict[str, str | None] = {}
    if skip:
        state["gateway"] = None if GATEWAY_VENV.marker.exists() else "not built"
    else:
        state["gateway"] = None if H.ensure_venv(GATEWAY_VENV) else "pip failed"
    enc = H.VENVS["encode"]
    marker = enc.path / ENCODE_MARKER
    if marker.exists():
        state["encode"] = None
    elif skip:
        state["encode"] = "httpx not installed"
    elif not H.ensure_venv(enc):
        state["encode"] = "pip failed"
    else:
        log(f"venv {enc.path.name}: adding {' '.join(ENCODE_EXTRAS)} ...")
        r = subprocess.run([str(enc.python), "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", *ENCODE_EXTRAS],
                           capture_output=True, text=True)
        if r.returncode == 0:
            marker.write_text(datetime.datetime.now().isoformat() + "\n")
            state["encode"] = None
        else:
            state["encode"] = "pip failed: " + r.stderr[-300:]
    if state["encode"] is None and not (SNIFFIO_DIR / "sniffio").exists():
        subprocess.run([str(enc.python), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "--target", str(SNIFFIO_DIR), "sniffio"],
                       capture_output=True, text=True)
    return state


VERSIONS = """\
import json, importlib.metadata as md, sys
out = {"python": sys.version.split()[0]}
for d in sys.argv[1:]:
    try:
        out[d] = md.version(d)
    except md.PackageNotFoundError:
        pass
import httpcore
out["httpcore imported from"] = httpcore.__file__
print(json.dumps(out))
"""


def versions(venv: H.Venv, dists: list[str]) -> dict[str, str]:
    r = subprocess.run([str(venv.python), "-c", VERSIONS, *dists], capture_output=True,
                       text=True, cwd=WORK,
                       env=H.bench_env({"PYTHONPATH": str(import_dir())}))
    if r.returncode != 0:
        return {"error": r.stderr.strip()[-200:]}
    return json.loads(r.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 rounds of 2 s (default 5 x 3 s)")
    p.add_argument("--only", help="comma-separated scenarios: small,big,h2up,h2down")
    p.add_argument("--rows", help="comma-separated rows to run (e.g. ours,aiohttp,ours-h2c)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--duration", type=float, help="measured seconds per run (whole seconds)")
    p.add_argument("--big-connections", type=int, default=10,
                   help="wrk connections for 1 MiB responses (default 10)")
    p.add_argument("--profile", action="store_true",
                   help="after measuring, py-spy (--native) on our gateway and aiohttp's, "
                   "small and h2up scenarios")
    p.add_argument("--skip-install", action="store_true", help="do not create missing venvs")
    opts = p.parse_args()

    rounds = opts.rounds or (3 if opts.quick else 5)
    duration = opts.duration or (2.0 if opts.quick else 3.0)
    warmup = 1.0 if opts.quick else 2.0  # per row, before its first round
    rewarm = 1.0  # before every measured wrk run (wrk's shortest run)
    all_sc = scenarios(opts.big_connections)
    only = opts.only.split(",") if opts.only else list(all_sc)
    for k in only:
        if k not in all_sc:
            p.error(f"unknown scenario {k!r}")
    row_filter = set(opts.rows.split(",")) if opts.rows else None
    for tool in ("wrk", "h2load", "taskset"):
        if not shutil.which(tool):
            log(f"WARNING: {tool} not found (bash benchmarks/run.sh --gateway installs it)")

    GW.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"WARNING: load average {load:.2f}: other work on this machine skews the figures")
    t_start = time.monotonic()
    ready = ensure_venvs(opts.skip_install)
    for name, why in ready.items():
        if why:
            log(f"venv {name} not usable: {why}")
    vers = {}
    if ready["gateway"] is None:
        vers["gateway venv"] = versions(GATEWAY_VENV, [
            "httpcore-actor", "aiohttp", "uvicorn", "uvloop", "httptools", "hypercorn", "h2"])
        if not str(vers["gateway venv"].get("httpcore imported from", "")).startswith(
                str(ROOT / "httpcore")):
            log(f"gateway venv imports httpcore from elsewhere: {vers['gateway venv']}")
    if ready["encode"] is None:
        vers["encode venv"] = versions(H.VENVS["encode"], [
            "httpx", "httpcore", "h2", "uvicorn", "uvloop", "httptools"])
        if str(vers["encode venv"].get("httpcore imported from", "")).startswith(
                str(ROOT / "httpcore")):
            log("encode venv imports OUR httpcore: httpx rows would be wrong")
            ready["encode"] = "imports our httpcore"

    def usable(spec: RowSpec) -> bool:
        if row_filter is not None and spec.name not in row_filter:
            return False
        g = GATEWAYS[spec.gateway]
        if g.venv is GATEWAY_VENV:
            return ready["gateway"] is None
        if g.venv is H.VENVS["encode"]:
            return ready["encode"] is None and all((d / "sniffio").exists()
                                                   for d in g.extra_path)
        return True

    cafile = H.make_cert()
    upstream = Upstream(H.free_port(), H.free_port(), H.free_port())
    config_path: Path | None = None
    results: dict[str, object] = {}
    all_rows: dict[str, dict[str, Row]] = {}
    lines: list[str] = []
    profiles: list[str] = []
    bridge: list[str] = []
    try:
        upstream.start()
        config_path = routes_toml(upstream, cafile)
        for key in only:
            sc = all_sc[key]
            specs = [s for s in sc.rows if usable(s)]
            if not specs:
                continue
            rows = run_scenario(sc, specs, upstream, config_path, rounds, duration, warmup,
                                rewarm)
            all_rows[key] = rows
            t, data = table(sc, rows)
            lines += [*t, ""]
            results[key] = data
            if opts.profile and key in ("small", "h2up"):
                for spec in specs:
                    if spec.name in ("ours", "ours-thread", "aiohttp", "ours-h2c", "ours-h2-tls",
                                     "aiohttp-tls"):
                        profiles += pyspy_profile(sc, spec, upstream, duration)
        if "small" in all_rows and ready["gateway"] is None:
            bridge = run_bridge()
    finally:
        for g in GATEWAYS.values():
            g.stop()
        upstream.stop()

    wall = time.monotonic() - t_start
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "nginx": nginx_version(),
        "cpus": os.cpu_count(),
        "rounds": rounds, "duration": duration, "warmup": warmup,
        "pinning": {"upstream+load": LOAD_CPU, "gateway": GATEWAY_CPU}
        if H.taskset("0") else None,
        "versions": vers,
        "wall_seconds": round(wall, 1),
        "loadavg_before": round(load, 2),
        "loadavg_after": round(os.getloadavg()[0], 2),
    }
    out = GW / "results.json"
    out.write_text(json.dumps({"meta": meta, "scenarios": results}, indent=2) + "\n")
    print()
    print(f"gateway benchmark: {rounds} rounds x {duration:g}s (warm-up {warmup:g}s per row), "
          f"upstream nginx {meta['nginx']} + wrk/h2load on CPU {LOAD_CPU}, gateway alone on "
          f"CPU {GATEWAY_CPU}, {rewarm:g}s of unmeasured load before each wrk run, load "
          f"average {load:.2f} before, {meta['loadavg_after']:.2f} after")
    print("Python gateways: python -m examples.gateway --no-access-log, one process, uvicorn "
          "(uvloop + httptools) unless hypercorn is named; nginx proxy_pass: 1 worker, "
          "access_log off, upstream keepalive 100, proxy_http_version 1.1.")
    for venv, v in vers.items():
        print(f"  {venv}: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print("'gw CPU' = the gateway process's CPU time over the run's wall time (100% = CPU 1 "
          "saturated); 'up conns' = TCP connections the gateway held to the upstream right "
          "after a run (max over runs) / new ones the upstream accepted during a measured run "
          "(max).")
    print()
    print("\n".join(lines).rstrip())
    if all_rows:
        print()
        print("\n".join(cpu_table(all_rows)))
    if bridge:
        print()
        print("\n".join(bridge))
    if profiles:
        print()
        print("(profile) py-spy --native --threads, own time by thread")
        print("\n".join(profiles))
    print()
    print(f"JSON: {out}  (took {wall:.0f}s)")
    return 0


def run_bridge() -> list[str]:
    """bridge.py's variant (4): one round trip between an async caller's loop and
    an engine loop in another thread, both on the gateway's CPU."""
    r = subprocess.run([*H.taskset(GATEWAY_CPU), str(GATEWAY_VENV.python),
                        str(HERE / "bridge.py"), "--json", "--n", "20000", "--rounds", "3",
                        "--loop", "asyncio"], capture_output=True, text=True, cwd=WORK,
                       env=H.bench_env(), timeout=300)
    if r.returncode != 0:
        return [f"(bridge) failed: {r.stderr.strip()[-200:]}"]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return ["(bridge) one loop-to-loop hop and back, unloaded, asyncio, CPU 1 [us, bridge.py]:"] + \
        [f"  {k:46} {v:6.1f}" for k, v in res.items() if k.startswith(("(1)", "(4)"))]


if __name__ == "__main__":
    sys.exit(main())
