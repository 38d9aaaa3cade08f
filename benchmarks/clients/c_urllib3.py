"""urllib3.PoolManager (sync modes)."""

from __future__ import annotations

import urllib3
from _common import check_small, emit, parse_args, run_download, run_seq, run_threads, ssl_context

STREAM_AMT = 2**16  # urllib3's default for HTTPResponse.stream()


def main() -> None:
    args = parse_args(["seq", "threads", "download"])
    url = args.url
    kw: dict = {"timeout": urllib3.Timeout(30.0), "retries": False}
    if args.mode == "threads":
        kw["maxsize"] = args.concurrency
    ctx = ssl_context(args)
    if ctx is not None:
        kw["ssl_context"] = ctx
    pool = urllib3.PoolManager(**kw)

    if args.mode == "download":

        def dl() -> int:
            n = 0
            r = pool.request("GET", url, preload_content=False)
            for chunk in r.stream(STREAM_AMT):
                n += len(chunk)
            r.release_conn()
            return n

        result = run_download(dl, args)
    else:

        def fn() -> None:
            r = pool.request("GET", url)
            check_small(r.status, r.data)

        result = run_seq(fn, args) if args.mode == "seq" else run_threads(fn, args)
    emit("urllib3", urllib3.__version__, args, result, http_version="HTTP/1.1")


if __name__ == "__main__":
    main()
