"""requests.Session, on requests' own HTTPAdapter (urllib3) or, with
BENCH_REQUESTS_ADAPTER=1, on httpcore.RequestsAdapter mounted for http:// and
https://. Everything else (requests, urllib3, the session, the loop) is the
same process and the same venv, so the rows differ by the adapter only.

threads mode shares one Session between the threads, as requests users do
(the adapter is thread-safe; HTTPAdapter gets pool_maxsize=N so urllib3 keeps
a connection per thread instead of discarding them)."""

from __future__ import annotations

import os

import requests
import requests.adapters
import urllib3
from _common import check_small, emit, parse_args, run_download, run_seq, run_threads

ADAPTER = os.environ.get("BENCH_REQUESTS_ADAPTER") == "1"
NULL = os.environ.get("BENCH_REQUESTS_ADAPTER") == "null"
STREAM_CHUNK = 2**16


class NullAdapter(requests.adapters.HTTPAdapter):
    """No I/O at all: every request gets a canned 12-byte urllib3 response.
    What is left is requests' own cost per request (Session.request, prepare,
    settings, cookies, hooks, build_response, reading .content): the ceiling
    any transport adapter can reach under requests."""

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        import io

        raw = urllib3.HTTPResponse(
            body=io.BytesIO(b"hello world\n"),
            headers={"Content-Length": "12", "Content-Type": "text/plain"},
            status=200,
            version=11,
            version_string="HTTP/1.1",
            reason="OK",
            preload_content=False,
            decode_content=False,
        )
        return self.build_response(request, raw)


def main() -> None:
    args = parse_args(["seq", "threads", "download"])
    url = args.url
    n = max(args.concurrency, 1)
    session = requests.Session()
    seen: dict[str, str] = {}
    adapter = None
    if NULL:
        null = NullAdapter()
        session.mount("http://", null)
        session.mount("https://", null)
        lib, version = "requests+null", f"{requests.__version__} (no I/O)"
    elif ADAPTER:
        import httpcore

        adapter = httpcore.RequestsAdapter(
            http2=args.http2,
            limits=httpcore.Limits(
                max_connections=None, max_keepalive_connections=max(100, n)
            ),
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        lib, version = "requests+adapter", f"{requests.__version__}+httpcore {httpcore.__version__}"
    else:
        http = requests.adapters.HTTPAdapter(pool_maxsize=max(10, n))
        session.mount("http://", http)
        session.mount("https://", http)
        lib, version = "requests+urllib3", f"{requests.__version__}+urllib3 {urllib3.__version__}"
    verify: bool | str = args.cafile or True
    timeout = 30.0

    def version_of(r: requests.Response) -> str:
        return {10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}.get(r.raw.version, "?")

    if args.mode == "download":

        def dl() -> int:
            got = 0
            with session.get(url, stream=True, verify=verify, timeout=timeout) as r:
                seen["http_version"] = version_of(r)
                for chunk in r.iter_content(STREAM_CHUNK):
                    got += len(chunk)
            return got

        result = run_download(dl, args)
    else:

        def fn() -> None:
            r = session.get(url, verify=verify, timeout=timeout)
            check_small(r.status_code, r.content)
            seen["http_version"] = version_of(r)

        result = run_seq(fn, args) if args.mode == "seq" else run_threads(fn, args)
    extra: dict[str, object] = {"http_version": seen.get("http_version")}
    if adapter is not None:
        conns = adapter.connections()
        extra["pool_connections"] = len(conns)
    emit(lib, version, args, result, **extra)


if __name__ == "__main__":
    main()
