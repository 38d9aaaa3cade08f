"""The curl command line, timed warm.

download: one curl process fetches the URL several times over one reused
connection (`curl -o /dev/null URL -o /dev/null URL ...`), as our client reuses
its connection, and the first transfer of each process (connect, TLS, TCP slow
start) is dropped. Rate = bytes downloaded / sum of curl's own time_total for
the kept transfers.

downloads: one curl process runs several hundred transfers, --concurrency of
them at a time (`--parallel --parallel-max N`; over HTTP/2 they are streams of
one connection). curl's time_total of parallel transfers overlap, so the rate is
bytes / wall time of the whole process, measured around it, start-up and
connect included (amortised over the transfers); a first, shorter process is a
warm-up and not counted.

--http2 on an http:// URL means h2c by prior knowledge (--http2-prior-knowledge),
as our client does with http1=False: nginx's h2c port speaks no HTTP/1.1.
libcurl before 8.0.0 (Debian 12 has 7.88.1) fails every transfer that reuses an
h2c prior-knowledge connection ("Error in the HTTP2 framing layer", curl issue
10634, fixed in 8.0.0), so for h2c the same curl binary runs on the newer libcurl
that the pycurl wheel of this venv bundles (LD_LIBRARY_PATH), when the system's
is older.
"""

from __future__ import annotations

import os
import re
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

from _common import Args, Errors, emit, parse_args

HTTP_VERSIONS = {"1.1": "HTTP/1.1", "2": "HTTP/2"}


def curl_version(env: dict[str, str] | None = None) -> tuple[str, str]:
    """(curl's version, libcurl's version) from `curl --version`."""
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=True,
                         env=env).stdout
    lib = re.search(r"libcurl/(\S+)", out)
    return out.split()[1], lib.group(1) if lib else "?"


def newer_libcurl(tmp: str) -> dict[str, str] | None:
    """An environment that runs curl on the pycurl wheel's libcurl: a directory
    with libcurl.so.4 pointing at it, then the wheel's libraries. None if the
    wheel has none (pycurl built against the system's libcurl)."""
    libs = Path(sysconfig.get_paths()["purelib"]) / "pycurl.libs"
    found = sorted(libs.glob("libcurl-*.so*"))
    if not found:
        return None
    os.symlink(found[0], Path(tmp) / "libcurl.so.4")
    return dict(os.environ, LD_LIBRARY_PATH=f"{tmp}:{libs}")


def major(version: str) -> int:
    m = re.match(r"\d+", version)
    return int(m.group()) if m else 0


def curl_base(args: Args) -> list[str]:
    cmd = ["curl", "-s", "-S", "-w", "%{size_download} %{time_total} %{http_version}\n"]
    if args.url.startswith("https:") and args.cafile:
        cmd += ["--cacert", args.cafile]
    if not args.http2:
        cmd.append("--http1.1")
    elif args.url.startswith("http:"):
        cmd.append("--http2-prior-knowledge")
    else:
        cmd.append("--http2")
    return cmd


def main() -> None:
    args = parse_args(["download", "downloads"])
    with tempfile.TemporaryDirectory() as tmp:
        run(args, tmp)


def run(args: Args, tmp: str) -> None:
    cmd = curl_base(args)
    if args.mode == "downloads":
        cmd += ["--parallel", "--parallel-max", str(args.concurrency)]
    version, libcurl = curl_version()
    env = None
    extra: dict[str, str] = {}
    if "--http2-prior-knowledge" in cmd and major(libcurl) < 8:
        env = newer_libcurl(tmp)
        if env is None:
            raise SystemExit(f"libcurl {libcurl} cannot reuse an h2c connection (curl issue "
                             "10634) and the pycurl wheel bundles no newer libcurl")
        version, lib2 = curl_version(env)
        if major(lib2) < 8:
            raise SystemExit(f"libcurl {libcurl} and the pycurl wheel's {lib2} cannot "
                             "reuse an h2c connection (curl issue 10634)")
        extra["note"] = f"libcurl {lib2} (pycurl wheel; system {libcurl} breaks h2c reuse)"
        libcurl = lib2
    errors = Errors()
    seen: set[str] = set()

    def batch(n: int) -> tuple[list[tuple[int, float]], float]:
        """n transfers in one curl process: (size, time_total) of each, and the
        process's wall time."""
        argv = list(cmd)
        for _ in range(n):
            argv += ["-o", "/dev/null", args.url]
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if r.returncode != 0:  # the command line is hundreds of URLs: show curl's words
            errs = [ln for ln in r.stderr.splitlines()
                    if ln.startswith("curl:") and "no version information" not in ln]
            raise RuntimeError(f"curl exit {r.returncode}: {(errs or ['?'])[-1]}")
        out = r.stdout.split()
        pairs = []
        for i in range(0, len(out), 3):
            size = int(out[i])
            if args.expect_bytes is not None and size != args.expect_bytes:
                raise RuntimeError(f"downloaded {size} bytes, expected {args.expect_bytes}")
            pairs.append((size, float(out[i + 1])))
            seen.add(HTTP_VERSIONS.get(out[i + 2], out[i + 2]))
        if len(pairs) != n:
            raise RuntimeError(f"{len(pairs)} transfers reported, expected {n}")
        return pairs, wall

    total = 0
    busy = 0.0
    if args.mode == "download":
        # Enough transfers per process to fill about a third of the run.
        probe, _ = batch(2)
        per = max(probe[1][1], 1e-3)
        n = max(3, min(200, int(args.duration / 3 / per) + 1))
    else:
        # Several hundred transfers per process (a third of the run, at least 200),
        # sized from a warm-up process.
        probe_n = 4 * args.concurrency
        _, wall = batch(probe_n)
        per = max(wall / probe_n, 1e-5)
        n = max(200, min(5000, int(args.duration / 3 / per) + 1))
    t0 = time.perf_counter()
    while True:
        try:
            pairs, wall = batch(n)
            if args.mode == "download":
                pairs = pairs[1:]  # the cold first transfer
                busy += sum(secs for _, secs in pairs)
            else:
                busy += wall
            total += sum(size for size, _ in pairs)
        except Exception as exc:
            errors.add(exc)
        if time.perf_counter() - t0 >= args.duration:
            break
    http_version = "/".join(sorted(seen)) or None
    # busy is 0 only when every process failed: the errors fail the run then.
    emit("curl", version, args, (total, busy or 1e-9, errors), http_version=http_version,
         libcurl=libcurl, transfers_per_process=n, **extra)


if __name__ == "__main__":
    main()
