"""pycurl: a reused Curl handle (one per thread in threads mode)."""

from __future__ import annotations

import threading

import pycurl
from _common import check_small, emit, parse_args, run_download, run_seq, run_threads


def make_handle(args):
    c = pycurl.Curl()
    c.setopt(pycurl.URL, args.url)
    c.setopt(pycurl.TIMEOUT, 30)
    if args.url.startswith("https:"):
        if args.cafile:
            c.setopt(pycurl.CAINFO, args.cafile)
        c.setopt(pycurl.SSL_VERIFYPEER, 1)
        c.setopt(pycurl.SSL_VERIFYHOST, 2)
    if args.http2:
        v = pycurl.CURL_HTTP_VERSION_2TLS if args.url.startswith("https:") else (
            pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)
        c.setopt(pycurl.HTTP_VERSION, v)
    else:
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    return c


def main() -> None:
    args = parse_args(["seq", "threads", "download"])
    local = threading.local()
    seen: list[int] = []

    def handle():
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = make_handle(args)
        return c

    if args.mode == "download":

        def dl() -> int:
            c = handle()
            box = [0]

            def sink(data: bytes) -> None:
                box[0] += len(data)

            c.setopt(pycurl.WRITEFUNCTION, sink)
            c.perform()
            if not seen:
                seen.append(c.getinfo(pycurl.INFO_HTTP_VERSION))
            return box[0]

        result = run_download(dl, args)
    else:

        def fn() -> None:
            c = handle()
            parts: list[bytes] = []
            c.setopt(pycurl.WRITEFUNCTION, parts.append)
            c.perform()
            check_small(c.getinfo(pycurl.RESPONSE_CODE), b"".join(parts))
            if not seen:
                seen.append(c.getinfo(pycurl.INFO_HTTP_VERSION))

        result = run_seq(fn, args) if args.mode == "seq" else run_threads(fn, args)
    versions = {pycurl.CURL_HTTP_VERSION_1_0: "HTTP/1.0", pycurl.CURL_HTTP_VERSION_1_1: "HTTP/1.1",
                pycurl.CURL_HTTP_VERSION_2_0: "HTTP/2"}
    hv = versions.get(seen[0]) if seen else None
    emit("pycurl", pycurl.version, args, result, http_version=hv)


if __name__ == "__main__":
    main()
