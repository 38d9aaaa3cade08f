"""A large streamed download with a progress bar, resumed with ``Range`` after an interruption.

Starts its own HTTP/1.1 file server (``http.server`` in a thread, on a free
port) serving a generated file of random bytes with ``Range``/``If-Range``
support, plus its SHA-256 at ``/file.sha256``. The server is told to cut the
connection once, part-way through the first response. The client streams the
body to ``<output>.part`` with a progress bar on stderr (bytes, rate, ETA),
sees the download break (an ``httpcore.HTTPCoreError``), asks for the rest
with ``Range: bytes=<what it has>-`` (and ``If-Range``, so a changed file
starts over), appends it and checks the SHA-256::

    python examples/download.py                   # 256 MiB, cut at 40%
    python examples/download.py --quick           # 16 MiB
    python examples/download.py --size-mib 1024 --cut-at 0.7 --output big.bin
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpcore

MiB = 1024 * 1024


# --------------------------------------------------------------------------
# The server: a file with Range support that cuts one response part-way.


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, path: Path, sha256: str, cut_after: int | None) -> None:
        super().__init__(("127.0.0.1", 0), FileHandler)
        self.path = path
        self.size = path.stat().st_size
        self.sha256 = sha256
        self.etag = f'"{sha256[:16]}"'
        self.cut_after = cut_after  # cut the next response after this many body bytes, once
        self.cuts: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FileHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: FileServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # stderr is the progress bar's

    def do_GET(self) -> None:
        server = self.server
        if self.path == "/file.sha256":
            body = f"{server.sha256}  file\n".encode()
            self._head(200, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            self.wfile.write(body)
            return
        if self.path != "/file":
            self._head(404, [("Content-Length", "0")])
            return
        start, end, status = 0, server.size - 1, 200
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if wanted and (if_range is None or if_range == server.etag):
            start = int(wanted[1])
            end = min(int(wanted[2]), end) if wanted[2] else end
            if start > end:
                self._head(
                    416, [("Content-Range", f"bytes */{server.size}"), ("Content-Length", "0")]
                )
                return
            status = 206
        length = end - start + 1
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(length)),
            ("Accept-Ranges", "bytes"),
            ("ETag", server.etag),
        ]
        if status == 206:
            headers.append(("Content-Range", f"bytes {start}-{end}/{server.size}"))
        self._head(status, headers)
        cut, server.cut_after = server.cut_after, None
        with open(server.path, "rb") as f:
            if cut is not None and cut < length:
                self.connection.sendfile(f, start, cut)
                server.cuts.append(cut)
                self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees EOF
                self.close_connection = True
                return
            self.connection.sendfile(f, start, length)

    def _head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()


def generate(path: Path, size: int) -> str:
    """``size`` random bytes at ``path``; returns their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for offset in range(0, size, 4 * MiB):
            block = os.urandom(min(4 * MiB, size - offset))
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_server(directory: Path, size: int, cut_after: int | None) -> Iterator[FileServer]:
    path = directory / "served.bin"
    server = FileServer(path, generate(path, size), cut_after)
    thread = threading.Thread(target=server.serve_forever, name="file-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --------------------------------------------------------------------------
# The client: progress bar, resume, checksum.


def human(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """``  45.2% [#########           ] 115.7 MiB / 256.0 MiB  612.3 MiB/s  ETA 0:00:00``
    on stderr, redrawn in place at most ten times a second."""

    WIDTH = 30

    def __init__(self, total: int, done: int) -> None:
        self.total = total
        self.done = done
        self.started_at = done
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self.draw(now)

    def draw(self, now: float) -> None:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * self.WIDTH)
        elapsed = max(now - self.start, 1e-6)
        rate = (self.done - self.started_at) / elapsed
        eta = clock((self.total - self.done) / rate) if rate > 0 else "--:--:--"
        sys.stderr.write(
            f"\r{fraction * 100:6.1f}% [{'#' * filled}{' ' * (self.WIDTH - filled)}] "
            f"{human(self.done)} / {human(self.total)}  {human(rate)}/s  ETA {eta}  "
        )
        sys.stderr.flush()

    def close(self) -> None:
        self.draw(time.monotonic())
        sys.stderr.write("\n")
        sys.stderr.flush()


def download(client: httpcore.Client, url: str, output: Path, attempts: int = 5) -> int:
    """Stream ``url`` to ``output``, resuming from ``output.part`` after a
    failure; returns the number of requests it took."""
    part = output.with_name(output.name + ".part")
    etag: str | None = None
    total: int | None = None
    for attempt in range(1, attempts + 1):
        # resume only what this run fetched: without the ETag a leftover .part
        # from elsewhere cannot be checked against the file (If-Range), so start over
        have = part.stat().st_size if part.exists() and etag else 0
        headers = [("Range", f"bytes={have}-")] if have else []
        if have and etag:
            headers.append(("If-Range", etag))  # the file changed meanwhile: 200, all of it
        try:
            with client.request("GET", url, headers=headers, stream=True) as response:
                head = {k.decode().lower(): v.decode() for k, v in response.headers}
                sent = "".join(f" {name}: {value}" for name, value in headers)
                got = [f"Content-Length: {head.get('content-length')}"]
                if "content-range" in head:
                    got.insert(0, f"Content-Range: {head['content-range']}")
                print(
                    f"GET {url}{sent} -> {response.http_version} {response.status_code}, "
                    + ", ".join(got)
                )
                if response.status_code == 200:
                    have, total = 0, int(head["content-length"])
                elif response.status_code == 206:
                    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+)", head["content-range"])
                    assert match is not None and int(match[1]) == have, head["content-range"]
                    total = int(match[2])
                else:
                    raise SystemExit(f"unexpected status {response.status_code}")
                etag = head.get("etag")
                progress = Progress(total, have)
                try:
                    with open(part, "r+b" if have else "wb") as f:
                        f.seek(have)
                        f.truncate()
                        for chunk in response.stream():
                            f.write(chunk)
                            progress.update(len(chunk))
                finally:
                    progress.close()
            part.replace(output)
            return attempt
        except httpcore.HTTPCoreError as exc:
            size = part.stat().st_size if part.exists() else 0
            share = f" of {total} ({size / total:.1%})" if total else ""
            print(f"interrupted at {size} bytes{share}: {type(exc).__name__}: {exc}")
    raise SystemExit(f"gave up after {attempts} attempts")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 16 MiB file")
    parser.add_argument("--size-mib", type=int, help="file size in MiB (default 256)")
    parser.add_argument("--cut-at", type=float, default=0.4, help="where the server cuts, 0..1")
    parser.add_argument("--no-cut", action="store_true", help="no interruption")
    parser.add_argument("--output", type=Path, help="where to save (default: a temp dir)")
    args = parser.parse_args()
    if not 0 < args.cut_at < 1:
        parser.error("--cut-at must be between 0 and 1")
    size = (args.size_mib or (16 if args.quick else 256)) * MiB
    cut_after = None if args.no_cut else int(size * args.cut_at)

    with tempfile.TemporaryDirectory() as tmp:
        output = args.output or Path(tmp) / "download.bin"
        with file_server(Path(tmp), size, cut_after) as server, httpcore.Client() as client:
            url = server.url + "/file"
            print(
                f"server: {url} ({human(size)}, Range support)"
                + (f", cuts the first response after {human(cut_after)}" if cut_after else "")
            )
            expected = client.request("GET", server.url + "/file.sha256").body.split()[0].decode()
            print(f"expected sha256 (from {server.url}/file.sha256): {expected}")
            start = time.monotonic()
            requests = download(client, url, output)
            elapsed = time.monotonic() - start
            cuts = server.cuts
        actual = sha256_of(output)
        print(
            f"downloaded {output.stat().st_size} bytes in {requests} request(s), {elapsed:.2f} s "
            f"({human(size / elapsed)}/s); the server cut {len(cuts)} response(s)"
        )
        ok = actual == expected and output.stat().st_size == size
        print(f"sha256 {actual}: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
