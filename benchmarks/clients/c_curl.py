"""The curl command line: `curl -s -o /dev/null URL`, repeated; curl's own timings.

Rate = bytes downloaded / sum of curl's time_total (process start-up excluded).
"""

from __future__ import annotations

import subprocess
import time

from _common import Errors, emit, parse_args


def main() -> None:
    args = parse_args(["download"])
    cmd = ["curl", "-s", "-S", "-o", "/dev/null", "-w", "%{size_download} %{time_total}\n"]
    if args.url.startswith("https:") and args.cafile:
        cmd += ["--cacert", args.cafile]
    cmd += ["--http2"] if args.http2 else ["--http1.1"]
    cmd.append(args.url)
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[1]
    errors = Errors()

    def once() -> tuple[int, float]:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
        size, secs = int(out[0]), float(out[1])
        if args.expect_bytes is not None and size != args.expect_bytes:
            raise RuntimeError(f"downloaded {size} bytes, expected {args.expect_bytes}")
        return size, secs

    if args.warmup > 0:
        once()
    total = 0
    busy = 0.0
    t0 = time.perf_counter()
    while True:
        try:
            size, secs = once()
            total += size
            busy += secs
        except Exception as exc:
            errors.add(exc)
        if time.perf_counter() - t0 >= args.duration:
            break
    emit("curl", version, args, (total, busy, errors))


if __name__ == "__main__":
    main()
