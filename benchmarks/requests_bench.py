"""requests on httpcore.RequestsAdapter against requests on its own HTTPAdapter (urllib3).

Run through `bash benchmarks/run.sh --requests [--quick] [--only ra,rb,re]` (see
README.md). It reuses harness.py: the same nginx (CPU 0), the client processes
on CPU 1, rounds alternating A B A B, medians. Both rows run clients/c_requests.py
in one venv (`.work/venv-requests`: this project editable with the `requests`
extra), so they share requests and urllib3 and differ by the adapter only.

Scenarios:
  ra  1 thread, sequential 12-byte GETs, HTTP/1.1 keep-alive        target >= 1.0x
  rb  32 threads sharing one Session, HTTP/1.1                      target >= 1.5x
  re  32 threads sharing one Session, TLS; the adapter speaks HTTP/2
      on one connection, urllib3 HTTP/1.1 on one per thread          target >= 3.0x
  rd  100 MiB streamed download (iter_content(65536)), HTTP/1.1     (not in the defaults)

The third row, requests+null, mounts an adapter that does no I/O (a canned
response): requests' own cost per request, the ceiling of any adapter. Its
column "requests+adapter/peer" says how close the adapter gets to it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import harness as H

H.VENVS["requests"] = H.Venv("requests", ("requests",), editable=True)
H.LIBS["requests+adapter"] = H.Lib(
    "requests+adapter", "requests", "c_requests.py", (("BENCH_REQUESTS_ADAPTER", "1"),), True
)
H.LIBS["requests+urllib3"] = H.Lib("requests+urllib3", "requests", "c_requests.py")
H.LIBS["requests+null"] = H.Lib(
    "requests+null", "requests", "c_requests.py", (("BENCH_REQUESTS_ADAPTER", "null"),)
)
H.HTTP1_ONLY.update({"requests+urllib3", "requests+null"})

LIBS = ("requests+adapter", "requests+urllib3", "requests+null")
TARGET = "requests+urllib3"
SCENARIOS = {
    s.key: s
    for s in (
        H.Scenario("ra", "requests: 1 thread, sequential 12-byte GETs, HTTP/1.1 keep-alive",
                   "seq", "/small", LIBS, targets=((TARGET, 1.0),)),
        H.Scenario("rb", "requests: 32 threads sharing one Session, 12-byte GETs, HTTP/1.1",
                   "threads", "/small", LIBS, concurrency=32, targets=((TARGET, 1.5),)),
        H.Scenario("re", "requests: 32 threads sharing one Session, TLS; adapter HTTP/2 on 1 "
                   "connection, urllib3 HTTP/1.1", "threads", "/small", LIBS, concurrency=32,
                   tls=True, http2=True, targets=((TARGET, 3.0),), one_connection=True),
        H.Scenario("rd", "requests: 100 MiB streamed download, HTTP/1.1", "download", "/big",
                   LIBS[:2], default=False),
    )
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 rounds of 1.5 s (default 5 x 3 s)")
    p.add_argument("--only", help="comma-separated scenarios: ra,rb,re,rd (default ra,rb,re)")
    p.add_argument("--rounds", type=int)
    p.add_argument("--duration", type=float, help="measured seconds per process")
    opts = p.parse_args()
    rounds = opts.rounds or (3 if opts.quick else 5)
    duration = opts.duration or (1.5 if opts.quick else 3.0)
    warmup = 0.3 if opts.quick else 0.5
    only = opts.only.split(",") if opts.only else [k for k, s in SCENARIOS.items() if s.default]
    for k in only:
        if k not in SCENARIOS:
            p.error(f"unknown scenario {k!r}")

    H.WORK.mkdir(parents=True, exist_ok=True)
    if not H.ensure_venv(H.VENVS["requests"]):
        return 1
    if "rd" in only:
        H.make_big_file()
    cafile = H.make_cert()
    nginx = H.Nginx(H.free_port(), H.free_port(), cafile)
    libs = [H.LIBS[name] for name in LIBS]
    table: list[str] = []
    results: dict[str, object] = {}
    start = time.monotonic()
    try:
        nginx.start()
        for key in only:
            sc = SCENARIOS[key]
            rows = H.run_scenario(sc, libs, nginx, rounds, duration, warmup)
            unit = "MiB/s" if sc.mode == "download" else "req/s"
            lines, data = H.scenario_table(sc, rows, unit)
            table += [*lines, ""]
            results[key] = data
    finally:
        nginx.stop()
    meta = {"rounds": rounds, "duration": duration, "nginx": nginx.version,
            "cpus": os.cpu_count(), "wall_seconds": round(time.monotonic() - start, 1)}
    H.report(H.WORK / "requests-results.json", meta, results, table,
             f"requests + httpcore.RequestsAdapter vs requests + urllib3: {rounds} rounds x "
             f"{duration:g}s, nginx on CPU {H.SERVER_CPU}, clients on CPU {H.CLIENT_CPU}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
