"""The curl command line, timed warm: one curl process fetches the URL several
times over one reused connection (`curl -o /dev/null URL -o /dev/null URL ...`),
as our client reuses its connection, and the first transfer of each process
(connect, TLS, TCP slow start) is dropped.

Rate = bytes downloaded / sum of curl's own time_total for the kept transfers.
"""

from __future__ import annotations

import subprocess
import time

from _common import Errors, emit, parse_args


def main() -> None:
    args = parse_args(["download"])
    cmd = ["curl", "-s", "-S", "-w", "%{size_download} %{time_total}\n"]
    if args.url.startswith("https:") and args.cafile:
        cmd += ["--cacert", args.cafile]
    cmd += ["--http2"] if args.http2 else ["--http1.1"]
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[1]
    errors = Errors()

    def batch(n: int) -> list[tuple[int, float]]:
        """n transfers in one curl process; all but the first (cold) one."""
        argv = list(cmd)
        for _ in range(n):
            argv += ["-o", "/dev/null", args.url]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
        pairs = [(int(out[i]), float(out[i + 1])) for i in range(0, len(out), 2)]
        for size, _ in pairs:
            if args.expect_bytes is not None and size != args.expect_bytes:
                raise RuntimeError(f"downloaded {size} bytes, expected {args.expect_bytes}")
        return pairs[1:]

    # Enough transfers per process to fill about a third of the run.
    probe = batch(2)
    per = max(probe[0][1], 1e-3)
    n = max(3, min(200, int(args.duration / 3 / per) + 1))
    total = 0
    busy = 0.0
    t0 = time.perf_counter()
    while True:
        try:
            for size, secs in batch(n):
                total += size
                busy += secs
        except Exception as exc:
            errors.add(exc)
        if time.perf_counter() - t0 >= args.duration:
            break
    emit("curl", version, args, (total, busy, errors))


if __name__ == "__main__":
    main()
