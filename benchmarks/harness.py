"""Benchmark harness: local nginx on CPU 0, each client library in its own process on CPU 1.

Run through `bash benchmarks/run.sh [--quick] [--only a,b] ...` (see README.md).
Standard library only; it builds its venvs and nginx config under benchmarks/.work/.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
CLIENTS = HERE / "clients"
BIG_SIZE = 100 * 2**20
BIG64_SIZE = 64 * 2**20
MIB = 2**20

PATH_SIZES = {"/big": BIG_SIZE, "/big64": BIG64_SIZE, "/1m": MIB}
"""Body size of each download path: the client checks every download against it."""

SERVER_CPU = "0"
CLIENT_CPU = "1"

# ---------------------------------------------------------------------------- venvs


@dataclass(frozen=True)
class Venv:
    name: str
    packages: tuple[str, ...]
    editable: bool = False  # ours: pip install -e ROOT[speed]

    @property
    def path(self) -> Path:
        return WORK / f"venv-{self.name}"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def marker(self) -> Path:
        return self.path / ".bench-ok"


VENVS = {
    "ours": Venv("ours", ("py-spy", "janus"), editable=True),  # janus: bridge.py only
    # urllib3, aiohttp and pycurl coexist happily.
    "peers": Venv("peers", ("urllib3", "aiohttp", "pycurl")),
    # niquests installs urllib3-future, which replaces the urllib3 package.
    "niquests": Venv("niquests", ("niquests",)),
    # encode's httpcore has our import name.
    "encode": Venv("encode", ("httpcore[http2,asyncio]", "h2")),
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ensure_venv(v: Venv) -> bool:
    if v.marker.exists():
        return True
    log(f"creating venv {v.path.name} ...")
    if not v.python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(v.path)], check=True)
    pip = [str(v.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps = [list(v.packages)] if v.packages else []
    if v.editable:
        steps.append(["-e", f"{ROOT}[speed]"])
    for step in steps:
        r = subprocess.run([*pip, *step], capture_output=True, text=True)
        if r.returncode != 0:
            err = "\n".join(ln for ln in r.stderr.splitlines()
                            if not ln.startswith("WARNING: Location"))
            log(f"venv {v.name}: pip install {' '.join(step)} failed:\n{err[-2000:]}")
            return False
    v.marker.write_text(datetime.datetime.now().isoformat() + "\n")
    return True


def ours_importable() -> str | None:
    """None when `import httpcore` works in our venv (and is ours), else the reason."""
    r = subprocess.run(
        [str(VENVS["ours"].python), "-c",
         "import httpcore; httpcore.Client; httpcore.PoolManager; print(httpcore.__file__)"],
        capture_output=True, text=True, cwd=WORK, env=bench_env(),
    )
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["import failed"])[-1]
    if not r.stdout.strip().startswith(str(ROOT)):
        return f"httpcore imported from {r.stdout.strip()}, not {ROOT}"
    return None


def uvloop_supported() -> bool:
    runner = ROOT / "httpcore" / "engine" / "runner.py"
    try:
        return "HTTPCORE_LOOP" in runner.read_text()
    except OSError:
        return False


# ---------------------------------------------------------------------------- nginx

NGINX_MAIN = """\
{user}worker_processes 1;
daemon off;
master_process on;
pid {n}/nginx.pid;
error_log {n}/error.log warn;
events {{
    worker_connections 4096;
    multi_accept on;
}}
"""
"""The main context every nginx config of the benchmarks starts with."""

NGINX_CONF = NGINX_MAIN + """\
http {{
    access_log off;
    client_body_temp_path {n}/tmp/body;
    proxy_temp_path {n}/tmp/proxy;
    fastcgi_temp_path {n}/tmp/fastcgi;
    uwsgi_temp_path {n}/tmp/uwsgi;
    scgi_temp_path {n}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 600s;
    keepalive_requests 1000000000;
    default_type application/octet-stream;

    # Plain HTTP/1.1: scenarios (a)-(d), and our HTTP/1.1 rows of (h)-(i).
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        location = /small {{ default_type text/plain; return 200 "hello world\\n"; }}
        location = /big {{ alias {w}/www/big.bin; }}
        location = /big64 {{ alias {w}/www/big64.bin; }}
        location = /1m {{ alias {w}/www/1m.bin; }}
        # TCP connections accepted so far (the harness diffs it around each run).
        location = /nginx_status {{ stub_status; }}
    }}

    # TLS + HTTP/2 (ALPN h2, http/1.1): for scenarios (e)-(g).
    server {{
        listen 127.0.0.1:{https_port} ssl http2 backlog=4096;
        ssl_certificate {w}/tls/server.pem;
        ssl_certificate_key {w}/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        http2_max_concurrent_streams 128;
        http2_chunk_size 16k;
        location = /small {{ default_type text/plain; return 200 "hello world\\n"; }}
        location = /big {{ alias {w}/www/big.bin; }}
    }}

    # h2c (HTTP/2 by prior knowledge, no TLS) with nginx's HTTP/2 defaults, as
    # issue 12 asks: no http2_* directive here, so 8 KiB DATA frames
    # (http2_chunk_size 8k). Scenarios (h)-(i). sendfile and tcp_nopush are
    # back at nginx's defaults (off) too: with them on, nginx's HTTP/2 output
    # turns TCP_NODELAY off around each sendfile, and a response's last
    # segment waits for the client's delayed ACK: curl and our client alike
    # saw one 40 ms stall every few 1 MiB downloads.
    server {{
        listen 127.0.0.1:{h2c_port} {h2c_listen}backlog=4096;
        {h2c_on}
        sendfile off;
        tcp_nopush off;
        location = /small {{ default_type text/plain; return 200 "hello world\\n"; }}
        location = /big64 {{ alias {w}/www/big64.bin; }}
        location = /1m {{ alias {w}/www/1m.bin; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_big_file() -> Path:
    path = WORK / "www" / "big.bin"
    if path.exists() and path.stat().st_size == BIG_SIZE:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(2**20)
    with open(path, "wb") as f:
        for _ in range(BIG_SIZE // len(block)):
            f.write(block)
    return path


def make_www() -> None:
    """big.bin, and big64.bin / 1m.bin: its first 64 MiB / 1 MiB (same random bytes)."""
    big = make_big_file()
    for name, size in (("big64.bin", BIG64_SIZE), ("1m.bin", MIB)):
        path = big.parent / name
        if path.exists() and path.stat().st_size == size:
            continue
        with open(big, "rb") as src, open(path, "wb") as dst:
            dst.write(src.read(size))


def nginx_version(nginx: str) -> str:
    r = subprocess.run([nginx, "-v"], capture_output=True, text=True)
    return r.stderr.strip().split("/")[-1]


def h2c_syntax(version: str) -> dict[str, str]:
    """nginx >= 1.25.1 enables HTTP/2 with `http2 on;` in the server (the listen
    parameter is deprecated there); older ones only know `listen ... http2`."""
    try:
        new = tuple(int(x) for x in version.split(".")[:3]) >= (1, 25, 1)
    except ValueError:
        new = False
    if new:
        return {"h2c_listen": "", "h2c_on": "http2 on;"}
    return {"h2c_listen": "http2 ", "h2c_on": ""}


def make_cert() -> Path:
    """A private CA and a leaf for localhost / 127.0.0.1; returns the CA file."""
    d = WORK / "tls"
    ca = d / "ca.pem"
    if (d / "server.pem").exists() and ca.exists():
        return ca
    d.mkdir(parents=True, exist_ok=True)
    (d / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )

    def ossl(*a: str) -> None:
        subprocess.run(["openssl", *a], check=True, cwd=d, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "3650", "-subj", "/CN=httpcore benchmark CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=localhost")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "3650", "-extfile", "leaf.ext")
    return ca


@dataclass
class Nginx:
    http_port: int
    https_port: int
    cafile: Path
    h2c_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    version: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def tls_base(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def h2c_base(self) -> str:
        return f"http://127.0.0.1:{self.h2c_port}"

    def start(self) -> None:
        n = WORK / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (n / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        conf = n / "nginx.conf"
        user = "user root;\n" if os.geteuid() == 0 else ""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.version = nginx_version(nginx)
        conf.write_text(NGINX_CONF.format(user=user, n=n, w=WORK, http_port=self.http_port,
                                          https_port=self.https_port, h2c_port=self.h2c_port,
                                          **h2c_syntax(self.version)))
        errlog = str(n / "error.log")
        subprocess.run([nginx, "-t", "-q", "-e", errlog, "-p", str(n), "-c", str(conf)],
                       check=True)
        self.proc = subprocess.Popen(
            [*taskset(SERVER_CPU), nginx, "-e", errlog, "-p", str(n), "-c", str(conf)],
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.proc.poll() is not None:
                    raise OSError("nginx exited")
                status, body = self.get("/small")
                if status == 200 and body == b"hello world\n":
                    break
                raise RuntimeError(f"nginx answered {status} {body!r}")
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start; see {errlog}") from None
                time.sleep(0.05)
        log(f"nginx {self.version} up: {self.base}, {self.tls_base} and h2c {self.h2c_base} "
            f"(pid {self.proc.pid})")

    def get(self, path: str) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def accepted(self) -> int:
        """Connections accepted so far, this status request's own included."""
        _, body = self.get("/nginx_status")
        # "Active connections: 1 \nserver accepts handled requests\n 5 5 7 \n..."
        return int(body.split(b"\n")[2].split()[0])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, master exits
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------------------- running clients


def taskset(cpu: str) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu]
    return []


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHONPATH", "HTTPCORE_LOOP",
              "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY"):
        env.pop(k, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Lib:
    name: str
    venv: str
    script: str
    env: tuple[tuple[str, str], ...] = ()
    ours: bool = False
    # Our client as a yardstick (ours-h1: HTTP/1.1): a row like a peer's, with
    # ratios ours/it, not a ratio column of its own.
    reference: bool = False


LIBS = {
    "ours": Lib("ours", "ours", "c_ours.py", ours=True),
    "ours-uvloop": Lib("ours-uvloop", "ours", "c_ours.py", (("HTTPCORE_LOOP", "uvloop"),), True),
    "ours-h1": Lib("ours-h1", "ours", "c_ours.py", ours=True, reference=True),
    "urllib3": Lib("urllib3", "peers", "c_urllib3.py"),
    "pycurl": Lib("pycurl", "peers", "c_pycurl.py"),
    "aiohttp": Lib("aiohttp", "peers", "c_aiohttp.py"),
    "curl": Lib("curl", "peers", "c_curl.py"),
    "encode-httpcore": Lib("encode-httpcore", "encode", "c_encode_httpcore.py"),
    "niquests": Lib("niquests", "niquests", "c_niquests.py"),
}


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    mode: str
    path: str
    libs: tuple[str, ...]
    concurrency: int = 1
    tls: bool = False
    http2: bool = False
    targets: tuple[tuple[str, float], ...] = ()  # (peer, minimum ours/peer)
    default: bool = True
    one_connection: bool = False  # ours must multiplex everything over one TCP connection
    h2c: bool = False  # HTTP/2 rows on nginx's h2c port, HTTP1_ONLY rows on the plain one


SCENARIOS = {
    s.key: s
    for s in (
        Scenario("a", "1 thread, sequential 12-byte GETs, HTTP/1.1 keep-alive", "seq", "/small",
                 ("ours", "ours-uvloop", "urllib3", "pycurl", "encode-httpcore", "niquests"),
                 targets=(("urllib3", 1.2),)),
        Scenario("b", "32 threads sharing one client, 12-byte GETs, HTTP/1.1", "threads",
                 "/small", ("ours", "ours-uvloop", "urllib3"), concurrency=32,
                 targets=(("urllib3", 1.5),)),
        Scenario("c", "100 concurrent asyncio tasks, 12-byte GETs, HTTP/1.1", "async", "/small",
                 ("ours", "ours-uvloop", "aiohttp"), concurrency=100,
                 targets=(("aiohttp", 0.6),)),
        Scenario("d", "100 MiB streamed download, HTTP/1.1", "download", "/big",
                 ("ours", "ours-uvloop", "urllib3", "curl"), targets=(("curl", 0.8),)),
        # Issue 3: HTTP/2 over TLS. Ours must say HTTP/2 and use one TCP connection
        # (checked in scenario_table; a miss is marked WRONG next to the row).
        Scenario("e", "32 threads sharing one client, TLS; ours/encode/pycurl HTTP/2", "threads",
                 "/small", ("ours", "ours-uvloop", "urllib3", "encode-httpcore", "pycurl"),
                 concurrency=32, tls=True, http2=True, targets=(("urllib3", 2.0),),
                 one_connection=True),
        Scenario("f", "100 asyncio tasks, TLS; ours/encode HTTP/2, aiohttp HTTP/1.1", "async",
                 "/small", ("ours", "ours-uvloop", "encode-httpcore", "aiohttp"),
                 concurrency=100, tls=True, http2=True,
                 targets=(("encode-httpcore", 3.0), ("aiohttp", 0.8)), one_connection=True),
        Scenario("g", "100 MiB download over TLS + HTTP/2", "download", "/big",
                 ("ours", "ours-uvloop", "curl"), tls=True, http2=True,
                 targets=(("curl", 0.7),), one_connection=True),
        # Issue 12: HTTP/2 from nginx with its defaults (8 KiB DATA frames), no TLS.
        # Ours must stay within reach of our own HTTP/1.1 on the same files.
        # ours-h1 (our client over HTTP/1.1 from the plain server) is the yardstick.
        Scenario("h", "64 MiB download over h2c from nginx with its defaults (8 KiB DATA "
                 "frames), one stream", "download", "/big64",
                 ("ours", "ours-uvloop", "ours-h1", "curl"), http2=True, h2c=True,
                 targets=(("ours-h1", 0.8), ("curl", 0.6)), one_connection=True),
        Scenario("i", "20 concurrent 1 MiB downloads over h2c, nginx defaults", "downloads",
                 "/1m", ("ours", "ours-uvloop", "ours-h1", "curl"),
                 concurrency=20, http2=True, h2c=True,
                 targets=(("ours-h1", 0.8), ("curl", 0.6)), one_connection=True),
    )
}

# Libraries that speak only HTTP/1.1 get no --http2 flag even in HTTP/2 scenarios
# (and in h2c scenarios go to the plain HTTP/1.1 port).
HTTP1_ONLY = {"urllib3", "aiohttp", "ours-h1"}

DOWNLOAD_MODES = ("download", "downloads")
"""Modes measured in MiB/s, in which any failed download fails the run."""


@dataclass
class Row:
    lib: str
    runs: list[float] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    errors: int = 0
    failures: list[str] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None


def run_client(lib: Lib, sc: Scenario, nginx: Nginx, duration: float, warmup: float,
               row: Row, profile: bool = False, cprofile: bool = False) -> None:
    if sc.tls:
        base = nginx.tls_base
    elif sc.h2c and lib.name not in HTTP1_ONLY:
        base = nginx.h2c_base
    else:
        base = nginx.base
    url = base + sc.path
    script = CLIENTS / lib.script
    args = [sc.mode, "--url", url, "--duration", str(duration), "--warmup", str(warmup),
            "--concurrency", str(sc.concurrency)]
    if sc.tls:
        args += ["--cafile", str(nginx.cafile)]
    if sc.http2 and lib.name not in HTTP1_ONLY:
        args.append("--http2")
    if sc.mode in DOWNLOAD_MODES:
        args += ["--expect-bytes", str(PATH_SIZES[sc.path])]
    py = str(VENVS[lib.venv].python)
    cmd = [py, "-u", str(script), *args]
    extra_env = dict(lib.env)
    pstats_out = WORK / f"cprofile-{sc.key}-{lib.name}.pstats"
    if cprofile:  # c_ours.py wraps Engine._main in cProfile and dumps here
        pstats_out.unlink(missing_ok=True)
        extra_env["BENCH_CPROFILE"] = str(pstats_out)
    if profile:
        pyspy = VENVS["ours"].path / "bin" / "py-spy"
        out = WORK / f"profile-{sc.key}-{lib.name}.svg"
        cmd = [str(pyspy), "record", "--native", "--threads", "-r", "250", "-o", str(out),
               "--", *cmd]
    before = nginx.accepted()
    try:
        r = subprocess.run([*taskset(CLIENT_CPU), *cmd], capture_output=True, text=True,
                           cwd=WORK, env=bench_env(extra_env),
                           timeout=duration * 4 + warmup + 120)
    except subprocess.TimeoutExpired as exc:
        row.failures.append(f"timed out after {exc.timeout:.0f}s")
        log(f"  {sc.key} {lib.name}: TIMEOUT")
        return
    conns = nginx.accepted() - before - 1  # minus the second status request
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        row.failures.append(f"exit {r.returncode}: {tail}")
        (WORK / f"failure-{sc.key}-{lib.name}.log").write_text(r.stdout + "\n" + r.stderr)
        log(f"  {sc.key} {lib.name}: FAILED ({tail})")
        return
    res = json.loads(lines[-1])
    if profile:
        log(f"  profile written to {WORK / f'profile-{sc.key}-{lib.name}.svg'}")
        return
    if cprofile:
        summarize_pstats(pstats_out)
        return
    row.errors += res["errors"]
    # More than 1% of requests failed: not a measurement. In download modes count
    # is bytes and a run is a handful of downloads: any failed download counts.
    if res["errors"] and (sc.mode in DOWNLOAD_MODES or res["errors"] * 100 > res["count"]):
        row.failures.append(f"{res['errors']} errors, first: {res['first_error']}")
        log(f"  {sc.key} {lib.name}: {res['errors']} errors ({res['first_error']})")
        return
    row.runs.append(res["rate"])
    row.connections.append(conns)
    row.info = {k: v for k, v in res.items()
                if k not in ("rate", "count", "elapsed", "errors", "mode", "lib", "concurrency")}
    err = f"  errors={res['errors']} first={res['first_error']}" if res["errors"] else ""
    log(f"  {sc.key} {lib.name:16} {res['rate']:12.1f} {res['unit']}  conns={conns}{err}")


def summarize_pstats(path: Path) -> None:
    """Engine-thread cProfile: the top functions by own time, next to the .pstats file."""
    import pstats
    from io import StringIO

    if not path.exists():
        log(f"  no engine profile at {path} (did the engine stop cleanly?)")
        return
    buf = StringIO()
    st = pstats.Stats(str(path), stream=buf)
    st.sort_stats("tottime").print_stats(35)
    st.sort_stats("cumulative").print_stats(35)
    txt = path.with_suffix(".txt")
    txt.write_text(buf.getvalue())
    log(f"  engine-thread profile: {path} (top functions: {txt})")


def run_scenario(sc: Scenario, libs: list[Lib], nginx: Nginx, rounds: int, duration: float,
                 warmup: float) -> dict[str, Row]:
    rows = {lib.name: Row(lib.name) for lib in libs}
    log(f"({sc.key}) {sc.title}: {', '.join(rows)}; {rounds} rounds x {duration:g}s")
    for i in range(rounds):
        log(f" round {i + 1}/{rounds}")
        for lib in libs:  # A B C ... A B C ...: alternate libraries within each round
            run_client(lib, sc, nginx, duration, warmup, rows[lib.name])
    return rows


# ---------------------------------------------------------------------------- report


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def protocol_problems(sc: Scenario, row: Row) -> list[str]:
    """Why an 'ours' row does not count for an HTTP/2 scenario (empty when it does).
    A reference row (ours-h1) must speak HTTP/1.1, over as many connections as it likes."""
    problems = []
    hv = row.info.get("http_version")
    if LIBS[row.lib].reference:
        return [f"spoke {hv}, not HTTP/1.1"] if hv != "HTTP/1.1" else []
    if sc.http2 and hv != "HTTP/2":
        problems.append(f"spoke {hv}, not HTTP/2")
    if sc.one_connection and row.connections and max(row.connections) != 1:
        problems.append(f"{max(row.connections)} TCP connections, not 1")
    pool_conns = row.info.get("pool_connections")
    if sc.one_connection and isinstance(pool_conns, int) and pool_conns != 1:
        problems.append(f"{pool_conns} connections in the pool, not 1")
    return problems


def is_column(name: str) -> bool:
    """Rows of our client measured against the others get a ratio column."""
    return LIBS[name].ours and not LIBS[name].reference


def scenario_table(sc: Scenario, rows: dict[str, Row], unit: str) -> tuple[list[str], dict]:
    ours_names = [n for n in rows if is_column(n) and rows[n].median is not None]
    wrong = {n: protocol_problems(sc, rows[n])
             for n in rows if LIBS[n].ours and rows[n].median is not None}
    out = [f"({sc.key}) {sc.title}  [{unit}, median of rounds]"]
    header = f"  {'library':16} {'median':>10} {'min':>10} {'max':>10} {'conns':>6}"
    for o in ours_names:
        header += f" {o + '/peer':>17}"
    out.append(header)
    ratios: dict[str, dict[str, float]] = {}
    for name, row in rows.items():
        m = row.median
        line = f"  {name:16} {fmt(m):>10} {fmt(min(row.runs) if row.runs else None):>10} " \
               f"{fmt(max(row.runs) if row.runs else None):>10} " \
               f"{(str(max(row.connections)) if row.connections else '-'):>6}"
        if not is_column(name):
            for o in ours_names:
                om = rows[o].median
                if m and om:
                    ratio = om / m
                    ratios.setdefault(o, {})[name] = ratio
                    target = dict(sc.targets).get(name)
                    mark = ""
                    if target is not None:
                        bad = wrong[o] or wrong.get(name)  # either side not as required
                        verdict = "BAD" if bad else "ok" if ratio >= target else "LOW"
                        mark = f" {verdict}>={target:g}"
                    line += f" {f'{ratio:.2f}x{mark}':>17}"
                else:
                    line += f" {'-':>17}"
        notes = []
        if row.errors:
            notes.append(f"errors={row.errors}")
        if row.failures:
            notes.append(f"{len(row.failures)} failed: {row.failures[-1][:80]}")
        hv = row.info.get("http_version")
        if hv and hv != "HTTP/1.1":
            notes.append(str(hv))
        if row.info.get("note"):
            notes.append(str(row.info["note"]))
        if name == "ours-uvloop" and row.info.get("uvloop") is False:
            notes.append("uvloop NOT loaded")
        notes += [f"WRONG: {w}" for w in wrong.get(name, ())]
        if notes:
            line += "  " + "; ".join(notes)
        out.append(line)
    data = {
        "title": sc.title,
        "unit": unit,
        "targets": dict(sc.targets),
        "results": {
            n: {"median": r.median, "runs": r.runs, "connections": r.connections,
                "errors": r.errors, "failures": r.failures, "info": r.info}
            for n, r in rows.items()
        },
        "ratios": ratios,
        "protocol_problems": wrong,
    }
    return out, data


def run_bridge(n: int, rounds: int) -> tuple[list[str], dict]:
    py = VENVS["ours"].python
    out_lines = ["(bridge) caller thread -> asyncio loop thread -> caller, round trip "
                 "[us, median of rounds]"]
    data: dict[str, dict[str, float]] = {}
    for loop in ("asyncio", "uvloop"):
        r = subprocess.run([*taskset(CLIENT_CPU), str(py), str(HERE / "bridge.py"), "--json",
                            "--n", str(n), "--rounds", str(rounds), "--loop", loop],
                           capture_output=True, text=True, cwd=WORK, env=bench_env(),
                           timeout=600)
        if r.returncode != 0:
            out_lines.append(f"  {loop}: failed: {r.stderr.strip()[-300:]}")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        data[loop] = res
        for k, v in res.items():
            out_lines.append(f"  {loop:8} {k:46} {v:8.1f}")
    return out_lines, data


# ---------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 rounds of 1.5 s (default 5 x 3 s)")
    p.add_argument("--only", help="comma-separated scenarios: a,b,c,d,e,f,g,h,i,bridge "
                   "(default: all of them)")
    p.add_argument("--libs", help="comma-separated libraries to run (default: all)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--duration", type=float, help="measured seconds per process")
    p.add_argument("--profile", action="store_true",
                   help="after measuring, record one py-spy flame graph per 'ours' row")
    p.add_argument("--cprofile", action="store_true",
                   help="after measuring, one more run per 'ours' row with the engine thread "
                   "under cProfile (.work/cprofile-SCENARIO-LIB.pstats and .txt)")
    p.add_argument("--skip-install", action="store_true", help="do not create missing venvs")
    opts = p.parse_args()

    rounds = opts.rounds or (3 if opts.quick else 5)
    duration = opts.duration or (1.5 if opts.quick else 3.0)
    warmup = 0.3 if opts.quick else 0.5
    default = [k for k, s in SCENARIOS.items() if s.default] + ["bridge"]
    only = opts.only.split(",") if opts.only else default
    for k in only:
        if k not in SCENARIOS and k != "bridge":
            p.error(f"unknown scenario {k!r}")
    lib_filter = set(opts.libs.split(",")) if opts.libs else None

    WORK.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"WARNING: load average {load:.2f}: other work on this machine skews the figures")
    if (os.cpu_count() or 1) < 2:
        log("WARNING: fewer than 2 CPUs: server and clients share a CPU (no pinning)")

    # Venvs (cached by a marker file in each).
    ready: dict[str, bool] = {}
    for name, v in VENVS.items():
        ready[name] = v.marker.exists() if opts.skip_install else ensure_venv(v)
    ours_problem = ours_importable() if ready["ours"] else "venv for ours not ready"
    if ours_problem:
        log(f"our library is not usable, skipping 'ours' rows: {ours_problem}")
    uvloop_ok = uvloop_supported()
    if not uvloop_ok:
        log("httpcore/engine/runner.py has no HTTPCORE_LOOP: no 'ours-uvloop' rows")

    def usable(lib: Lib) -> bool:
        if lib_filter is not None and lib.name not in lib_filter:
            return False
        if lib.ours:
            return ours_problem is None and ("HTTPCORE_LOOP" not in dict(lib.env) or uvloop_ok)
        return ready[lib.venv]

    make_www()
    cafile = make_cert()
    nginx = Nginx(free_port(), free_port(), cafile)
    results: dict[str, object] = {}
    table: list[str] = []
    t_start = time.monotonic()
    try:
        nginx.start()
        for key in only:
            if key == "bridge":
                if ready["ours"]:
                    lines, data = run_bridge(20000 if opts.quick else 50000, rounds)
                    table += [*lines, ""]
                    results["bridge"] = data
                continue
            sc = SCENARIOS[key]
            libs = [LIBS[n] for n in sc.libs if usable(LIBS[n])]
            if not libs:
                continue
            rows = run_scenario(sc, libs, nginx, rounds, duration, warmup)
            unit = "MiB/s" if sc.mode in DOWNLOAD_MODES else "req/s"
            lines, data = scenario_table(sc, rows, unit)
            table += [*lines, ""]
            results[key] = data
            for lib in libs:
                if lib.ours and opts.profile:
                    run_client(lib, sc, nginx, duration, warmup, Row(lib.name), profile=True)
                if lib.ours and opts.cprofile:
                    run_client(lib, sc, nginx, duration, warmup, Row(lib.name), cprofile=True)
    finally:
        nginx.stop()

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "nginx": nginx.version,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "duration": duration,
        "warmup": warmup,
        "pinning": {"server": SERVER_CPU, "clients": CLIENT_CPU} if taskset("0") else None,
        "wall_seconds": round(time.monotonic() - t_start, 1),
        "loadavg_before": round(load, 2),
        "loadavg_after": round(os.getloadavg()[0], 2),
    }
    report(WORK / "results.json", meta, results, table,
           f"httpcore benchmarks: {rounds} rounds x {duration:g}s, nginx {nginx.version} on CPU "
           f"{SERVER_CPU}, clients on CPU {CLIENT_CPU}, python {meta['python']}, "
           f"load average {load:.2f} before")
    return 0


def report(out: Path, meta: dict, results: dict, table: list[str], title: str) -> None:
    """Write the JSON of a run and print its table under ``title``."""
    out.write_text(json.dumps({"meta": meta, "scenarios": results}, indent=2) + "\n")
    print()
    print(title)
    print()
    print("\n".join(table).rstrip())
    print()
    print(f"JSON: {out}  (took {meta['wall_seconds']:.0f}s)")


if __name__ == "__main__":
    sys.exit(main())
