"""The gateway of ``examples/gateway`` as a subprocess, and a raw HTTP/1.1 client.

:func:`run_gateway` starts ``python -m examples.gateway`` (uvicorn or hypercorn)
with its stderr, where the access log goes, in a file; :meth:`Gateway.access`
polls that file (with a deadline) for a request's access-log line.
:func:`exchange` sends bytes exactly as given on a fresh socket and reads the
response until the server closes, for tests that need to control the wire.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers.process import free_port, stop_process, wait_listening

ROOT = Path(__file__).resolve().parent.parent.parent

ACCESS = re.compile(
    r"gateway\.access (?P<client>\S+) (?P<method>\S+) (?P<path>\S+) -> (?P<upstream>\S+)"
    r" (?P<status>\d+) (?P<bytes>\d+) (?P<ms>[\d.]+)ms$"
)


def toml_config(routes: list[dict[str, Any]]) -> str:
    """``[[route]]`` tables for ``routes`` (values: str, bool, int, float, list of str)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(v)

    out = []
    for route in routes:
        out.append("[[route]]")
        out.extend(f"{key} = {value(v)}" for key, v in route.items())
        out.append("")
    return "\n".join(out)


@dataclass(frozen=True)
class AccessLine:
    client: str
    method: str
    path: str
    upstream: str
    status: int
    nbytes: int
    ms: float


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first stderr line matching ``pattern``; polled until ``timeout``:
        the gateway logs a request after its response has gone out."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                match = regex.search(line)
                if match:
                    return match
            if time.monotonic() > deadline:
                tail = "\n".join(self.log_lines()[-20:])
                raise AssertionError(f"no log line matching {pattern!r}; last lines:\n{tail}")
            time.sleep(0.02)  # polling a file the gateway appends to

    def access(self, path: str, timeout: float = 10.0) -> AccessLine:
        """The access-log line of the request for exactly ``path``."""
        match = self.wait_log(
            r"gateway\.access \S+ \S+ " + re.escape(path) + r" -> .*ms$", timeout=timeout
        )
        found = ACCESS.search(match.group(0))
        assert found is not None, match.group(0)
        g = found.groupdict()
        return AccessLine(
            g["client"],
            g["method"],
            g["path"],
            g["upstream"],
            int(g["status"]),
            int(g["bytes"]),
            float(g["ms"]),
        )

    def status(self) -> dict[str, Any]:
        response = exchange(self.port, get("/-/status"))
        assert response.status == 200, response
        return json.loads(response.body)  # type: ignore[no-any-return]

    def rss(self) -> int:
        return vm(self.proc.pid, "VmRSS")


def vm(pid: int, field: str) -> int:
    """``field`` (VmRSS, VmHWM, ...) of ``/proc/<pid>/status``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for pid {pid}")


@contextlib.contextmanager
def run_gateway(
    config: Path,
    directory: Path,
    *,
    server: str = "uvicorn",
    workers: int = 1,
    extra: tuple[str, ...] = (),
) -> Iterator[Gateway]:
    """``python -m examples.gateway`` with ``config``, stderr+stdout to
    ``directory/gateway-PORT.log``, until the ``with`` block ends."""
    port = free_port()
    log_path = directory / f"gateway-{port}.log"
    argv = [
        sys.executable,
        "-m",
        "examples.gateway",
        "--config",
        str(config),
        "--port",
        str(port),
        "--server",
        server,
        "--workers",
        str(workers),
        *extra,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_listening(port, proc)
            yield Gateway(proc, port, log_path)
        finally:
            stop_process(proc)


# -- a raw HTTP/1.1 client -----------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    complete: bool
    """The body was framed and all of it arrived (Content-Length reached, or
    the last chunk of a chunked body)."""

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def get(path: str, host: str = "127.0.0.1", extra: bytes = b"") -> bytes:
    """A GET that asks the server to close the connection after the answer."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode() + extra + b"\r\n"
    )


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    data = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    return bytes(data)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head (up to the blank line) and whatever body bytes came with it."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"closed before the end of the head: {bytes(data)!r}")
        data += piece
    end = data.index(b"\r\n\r\n") + 4
    return bytes(data[:end]), bytes(data[end:])


def exchange(port: int, request: bytes, timeout: float = 10.0) -> RawResponse:
    """Send ``request`` on a new connection; the response, read until the server closes."""
    with connect(port, timeout) as sock:
        sock.sendall(request)
        return parse_response(read_until_closed(sock))


def parse_response(data: bytes) -> RawResponse:
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {data[:200]!r}"
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    names = {k.lower(): v for k, v in headers}
    if names.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = bytearray()
        complete = False
        while True:
            size_line, sep, after = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                complete = after.startswith(b"\r\n") or b"\r\n\r\n" in after
                break
            if len(after) < size + 2:
                body += after[:size]
                break
            body += after[:size]
            rest = after[size + 2 :]
        return RawResponse(status, headers, bytes(body), complete)
    if b"content-length" in names:
        length = int(names[b"content-length"])
        return RawResponse(status, headers, rest[:length], len(rest) >= length)
    return RawResponse(status, headers, rest, True)
