"""niquests: one Session (runs in its own venv: urllib3-future replaces urllib3)."""

from __future__ import annotations

import niquests
from _common import check_small, emit, parse_args, run_seq, run_threads


def main() -> None:
    args = parse_args(["seq", "threads"])
    url = args.url
    kw: dict = {}
    if not args.http2:
        kw["disable_http2"] = True
    kw["disable_http3"] = True
    session = niquests.Session(**kw)
    verify = args.cafile if args.cafile else True

    def fn() -> None:
        r = session.get(url, timeout=30, verify=verify)
        check_small(r.status_code, r.content)

    result = run_seq(fn, args) if args.mode == "seq" else run_threads(fn, args)
    emit("niquests", niquests.__version__, args, result)


if __name__ == "__main__":
    main()
