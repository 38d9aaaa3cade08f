"""A small curl built on :class:`httpcore.Client`: one request, the body to stdout.

Usage::

    python -m httpcore [options] URL

    -X, --request METHOD         request method (default GET; POST with -d, HEAD with -I)
    -H, --header 'Name: value'   extra request header; repeatable
    -d, --data DATA | @FILE      request body, sent as is (also --data-binary; @- is stdin)
    -o, --output FILE            write the body (and -i head) to FILE, not stdout
    -i, --include                write the response head (CRLF lines) before the body
    -I, --head                   send HEAD; write the response head
    -w, --write-out FORMAT       after the transfer, write FORMAT to stdout (@FILE reads it)
    -f, --fail                   status >= 400: write no body, exit 22
    -s, --silent                 no error message (exit code unchanged)
    -S, --show-error             with -s: still print the error message
    -v, --verbose                response head and notes on stderr
    -m, --max-time SECONDS       limit for the whole transfer (0: none)
    --connect-timeout SECONDS    limit for TCP, proxy and TLS setup (0: none)
    -x, --proxy URL              http://, https://, socks5:// or socks5h:// proxy
    --unix-socket PATH           connect to this Unix socket; the URL still names the host
    --cacert FILE                verify the server with this CA bundle
    -k, --insecure               do not verify the server certificate
    --http1.1 (--http1)          HTTP/1.1 only
    --http2                      prefer HTTP/2 (ALPN h2 on https://; http:// stays HTTP/1.1)
    --http2-prior-knowledge      HTTP/2 only (h2c on http://, ALPN h2 only on https://)

As in curl, a URL without ``scheme://`` is taken as ``http://``, and so is a proxy.
Without -m and --connect-timeout nothing is time-limited. Redirects are not
followed (-L is refused): that belongs to higher-level libraries.

``-w`` knows ``%{http_code}`` (``%{response_code}``), ``%{http_version}`` (``1.1``,
``2``), ``%{time_total}``, ``%{time_starttransfer}`` (seconds, 6 decimals),
``%{size_download}``, ``%{size_header}``, ``%{num_headers}``, ``%{content_type}``,
``%{method}``, ``%{url_effective}``, ``%{exitcode}``, ``%{errormsg}``,
``%header{NAME}``, ``%%`` and the escapes ``\\n \\r \\t \\\\``. It is written even
when the transfer failed (``%{http_code}`` is ``000`` if no response came).

A failure prints one line, ``httpcore: (CODE) <ExceptionType>: <message>``, on
stderr (never a traceback) and exits with curl's code for it:

====  ==========================================================================
0     success (an HTTP error status too, unless -f)
1     unsupported URL scheme (UnsupportedProtocol for the scheme)
2     usage error, or a request that cannot be built (LocalProtocolError, ...)
3     malformed URL (UnsupportedProtocol for anything but the scheme)
5     could not resolve the proxy's name, or the proxy URL is unusable
6     could not resolve the host's name
7     could not connect (refused, unreachable, no such Unix socket)
8     weird server reply (RemoteProtocolError)
18    the body ended early: closed before Content-Length or the last chunk
22    -f and an HTTP status >= 400
23    cannot write the output (-o file, closed stdout pipe)
26    cannot read the -d @FILE data
28    timeout: any TimeoutException, or -m running out
35    TLS handshake or certificate verification failure (curl says 60 for the latter)
52    the server closed the connection without sending a response
55    failure sending data (WriteError)
56    failure receiving data (ReadError)
97    proxy handshake error (ProxyError: CONNECT refused, SOCKS failure)
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import math
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import BinaryIO

import httpcore

PROG = "httpcore"


class Exit(enum.IntEnum):
    """curl's exit codes, so scripts written for curl read ours the same way."""

    OK = 0
    UNSUPPORTED_PROTOCOL = 1
    FAILED_INIT = 2
    URL_MALFORMAT = 3
    COULDNT_RESOLVE_PROXY = 5
    COULDNT_RESOLVE_HOST = 6
    COULDNT_CONNECT = 7
    WEIRD_SERVER_REPLY = 8
    PARTIAL_FILE = 18
    HTTP_RETURNED_ERROR = 22
    WRITE_ERROR = 23
    READ_ERROR = 26
    OPERATION_TIMEDOUT = 28
    SSL_CONNECT_ERROR = 35
    GOT_NOTHING = 52
    SEND_ERROR = 55
    RECV_ERROR = 56
    PROXY = 97
    INTERRUPTED = 130


PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


class Failure(Exception):
    """A failed transfer: curl's exit code and the one line that explains it."""

    def __init__(
        self, code: Exit, message: str, kind: str = "", stdout_closed: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = " ".join(message.split()) or "(no message)"
        self.kind = kind
        self.stdout_closed = stdout_closed  # then nothing more may go to stdout

    def line(self) -> str:
        what = f"{self.kind}: {self.message}" if self.kind else self.message
        return f"{PROG}: ({self.code}) {what}\n"


class MaxTimeExceeded(BaseException):
    """-m ran out. A BaseException, like KeyboardInterrupt, because it is raised
    from a signal handler at any point: the library cleans up after it as after
    Ctrl-C (the request is cancelled) and no ``except Exception`` swallows it."""


# -- -w ---------------------------------------------------------------------------


@dataclass
class Report:
    """What ``-w`` can tell about the transfer, filled in as it goes."""

    method: str
    url: str
    started: float = field(default_factory=time.monotonic)
    head_at: float | None = None
    finished: float | None = None
    status: int = 0
    http_version: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    size_header: int = 0
    size_download: int = 0
    exit_code: int = 0
    error: str = ""

    def seconds(self, at: float | None) -> str:
        """Seconds from the start to ``at``, as curl prints them (0 if it never happened)."""
        return f"{at - self.started:.6f}" if at is not None else "0.000000"

    def header(self, name: str) -> str:
        wanted = name.lower().encode("latin-1", "replace")
        values = [v.decode("latin-1") for k, v in self.headers if k.lower() == wanted]
        return ", ".join(values)


_VARIABLES: dict[str, Callable[[Report], str]] = {
    "content_type": lambda r: r.header("content-type"),
    "errormsg": lambda r: r.error,
    "exitcode": lambda r: str(r.exit_code),
    "http_code": lambda r: f"{r.status:03d}",
    "http_version": lambda r: r.http_version.removeprefix("HTTP/") or "0",
    "method": lambda r: r.method,
    "num_headers": lambda r: str(len(r.headers)),
    "response_code": lambda r: f"{r.status:03d}",
    "size_download": lambda r: str(r.size_download),
    "size_header": lambda r: str(r.size_header),
    "time_starttransfer": lambda r: r.seconds(r.head_at),
    "time_total": lambda r: r.seconds(r.finished),
    "url_effective": lambda r: r.url,
}

_WRITE_OUT_TOKEN = re.compile(r"\\([nrt\\])|%%|%(header)?\{([^}]*)\}")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}

WriteOut = list[Callable[[Report], str]]


def _literal(text: str) -> Callable[[Report], str]:
    return lambda _: text


def _header_value(name: str) -> Callable[[Report], str]:
    return lambda report: report.header(name)


def _compile_write_out(fmt: str) -> WriteOut:
    """Parse ``-w`` up front, so a typo is a usage error before any request."""
    parts: WriteOut = []
    pos = 0
    for match in _WRITE_OUT_TOKEN.finditer(fmt):
        parts.append(_literal(fmt[pos : match.start()]))
        pos = match.end()
        escape, header, name = match.groups()
        if escape is not None:
            parts.append(_literal(_ESCAPES[escape]))
        elif match.group() == "%%":
            parts.append(_literal("%"))
        elif header is not None:
            parts.append(_header_value(name))
        elif name in _VARIABLES:
            parts.append(_VARIABLES[name])
        else:
            raise ValueError(f"unknown --write-out variable {name!r}")
    parts.append(_literal(fmt[pos:]))
    return parts


# -- options ------------------------------------------------------------------------


def _seconds(text: str) -> float | None:
    """-m and --connect-timeout: seconds, decimals allowed; 0 means no limit, as in curl."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value or None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Send one HTTP request with httpcore and write the response body.",
        epilog="Exit codes are curl's; see the module docstring (pydoc httpcore.__main__).",
    )
    add = parser.add_argument
    add("url", metavar="URL", help="http:// or https:// URL (no scheme: http://)")
    add("-X", "--request", dest="method", metavar="METHOD", help="request method")
    add(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="extra request header; repeatable",
    )
    add(
        "-d",
        "--data",
        "--data-binary",
        dest="data",
        metavar="DATA",
        help="request body, sent as is; @FILE reads it from FILE, @- from stdin",
    )
    add("-o", "--output", metavar="FILE", help="write the body to FILE ('-': stdout)")
    add("-i", "--include", action="store_true", help="write the response head before the body")
    add("-I", "--head", action="store_true", help="send HEAD and write the response head")
    add("-w", "--write-out", metavar="FORMAT", help="write FORMAT to stdout after the transfer")
    add("-f", "--fail", action="store_true", help="HTTP status >= 400: no output, exit 22")
    add("-s", "--silent", action="store_true", help="print no error message")
    add("-S", "--show-error", action="store_true", help="with -s, print error messages")
    add("-v", "--verbose", action="store_true", help="print the response head to stderr")
    add("-m", "--max-time", type=_seconds, metavar="SECONDS", help="limit for the whole transfer")
    add("--connect-timeout", type=_seconds, metavar="SECONDS", help="limit for connecting")
    add("-x", "--proxy", metavar="URL", help="proxy: http://, https://, socks5://, socks5h://")
    add("--unix-socket", metavar="PATH", help="connect to this Unix domain socket")
    add("--cacert", metavar="FILE", help="verify the server with this CA bundle")
    add("-k", "--insecure", action="store_true", help="do not verify the server certificate")
    version = parser.add_mutually_exclusive_group()
    version.add_argument(
        "--http1.1", "--http1", dest="http1_only", action="store_true", help="HTTP/1.1 only"
    )
    version.add_argument(
        "--http2",
        action="store_true",
        help="prefer HTTP/2: ALPN offers h2 and http/1.1 on https://; http:// stays HTTP/1.1",
    )
    version.add_argument(
        "--http2-prior-knowledge",
        action="store_true",
        help="HTTP/2 only: h2c on http://, ALPN h2 only on https://",
    )
    add("-L", "--location", action="store_true", help=argparse.SUPPRESS)  # refused in _job
    return parser


@dataclass
class Job:
    """The validated command line."""

    url: str
    method: str
    headers: list[tuple[str, str]]
    data: str | None
    output: str | None
    include: bool
    head_only: bool
    write_out: WriteOut | None
    fail: bool
    show_errors: bool
    verbose: bool
    max_time: float | None
    connect_timeout: float | None
    proxy: str | None
    unix_socket: str | None
    ssl: ssl.SSLContext | bool | None
    http1: bool
    http2: bool
    prefer_http2: bool


def _with_scheme(url: str) -> str:
    """curl's guess for a URL or proxy without ``scheme://``: plain HTTP."""
    return url if "://" in url else "http://" + url


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _host(url: str) -> str:
    authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else host
    return host.partition(":")[0].lower()


def _job(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Job:
    """Check the options together; every problem is a usage error (exit 2), as in curl."""
    if args.location:
        parser.error("-L/--location is not supported: httpcore does not follow redirects")
    if args.head and args.data is not None:
        parser.error("-I/--head sends HEAD and cannot send -d data")
    headers: list[tuple[str, str]] = []
    for raw in args.headers:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            parser.error(f"bad header {raw!r}: expected 'Name: value'")
        headers.append((name.strip(), value.strip()))
    write_out = None
    if args.write_out is not None:
        fmt: str = args.write_out
        try:
            if fmt.startswith("@"):
                fmt = _read_text(fmt[1:])
            write_out = _compile_write_out(fmt)
        except (OSError, ValueError) as exc:
            parser.error(f"-w: {exc}")
    proxy = _with_scheme(args.proxy) if args.proxy else None  # -x "": no proxy
    if proxy is not None and _scheme(proxy) not in PROXY_SCHEMES:
        parser.error(f"unsupported proxy scheme in {proxy!r}; use {', '.join(PROXY_SCHEMES)}")
    ssl_option: ssl.SSLContext | bool | None = None  # the library's default: verify with certifi
    if args.insecure:
        ssl_option = False  # -k wins over --cacert, as in curl
    elif args.cacert is not None:
        try:
            ssl_option = ssl.create_default_context(cafile=args.cacert)
        except (OSError, ssl.SSLError) as exc:
            parser.error(f"--cacert {args.cacert}: {exc}")
    method = args.method or ("HEAD" if args.head else "POST" if args.data is not None else "GET")
    return Job(
        url=_with_scheme(args.url),
        method=method,
        headers=headers,
        data=args.data,
        output=None if args.output == "-" else args.output,
        include=args.include or args.head,
        head_only=args.head,
        write_out=write_out,
        fail=args.fail,
        show_errors=not args.silent or args.show_error,
        verbose=args.verbose,
        max_time=args.max_time,
        connect_timeout=args.connect_timeout,
        proxy=proxy,
        unix_socket=args.unix_socket,
        ssl=ssl_option,
        http1=not args.http2_prior_knowledge,
        http2=not args.http1_only,
        prefer_http2=args.http2,
    )


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def _timeout(job: Job) -> httpcore.Timeout | None:
    """-m bounds every phase, --connect-timeout (if shorter) the connect phase; neither: none."""
    if job.max_time is None and job.connect_timeout is None:
        return None
    limits = [t for t in (job.connect_timeout, job.max_time) if t is not None]
    every = job.max_time
    return httpcore.Timeout(connect=min(limits), read=every, write=every, pool=every)


# -- the transfer ---------------------------------------------------------------------


class Deadline:
    """-m as a wall-clock deadline for the whole transfer.

    The library's timeouts are per phase (a server trickling one byte a second
    never trips a read timeout), so the CLI keeps its own clock: a SIGALRM
    (POSIX, main thread) interrupts whatever blocks, and ``check()`` between
    chunks covers platforms without it.
    """

    def __init__(self, seconds: float | None, started: float) -> None:
        self.at = None if seconds is None else started + seconds

    def check(self) -> None:
        if self.at is not None and time.monotonic() >= self.at:
            self.expired()

    def expired(self) -> None:
        raise MaxTimeExceeded

    @contextlib.contextmanager
    def armed(self) -> Iterator[Deadline]:
        usable = (
            hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )
        if self.at is None or not usable:
            yield self
            return

        def on_alarm(signum: int, frame: FrameType | None) -> None:
            self.expired()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, max(self.at - time.monotonic(), 1e-6))
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _read_body(data: str | None) -> bytes | None:
    """-d: text as UTF-8, @FILE (or @-) byte for byte; an unreadable file is curl's 26."""
    if data is None:
        return None
    if not data.startswith("@"):
        return data.encode("utf-8")
    path = data[1:]
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Failure(Exit.READ_ERROR, str(exc), type(exc).__name__) from exc


class Output:
    """stdout or ``-o FILE``; any failure to write is curl's 23."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    def __enter__(self) -> Output:
        if self.path is not None:
            # Only opened once the server has answered (and -f let it through).
            try:
                self._file = open(self.path, "wb")
            except OSError as exc:
                raise Failure(Exit.WRITE_ERROR, str(exc), type(exc).__name__) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def write(self, data: bytes) -> None:
        out = self._file if self._file is not None else sys.stdout.buffer
        try:
            out.write(data)
            out.flush()  # chunk by chunk: a slow stream shows up as it arrives
        except BrokenPipeError as exc:
            raise Failure(Exit.WRITE_ERROR, "output closed", "BrokenPipeError", True) from exc
        except OSError as exc:
            raise Failure(Exit.WRITE_ERROR, str(exc), type(exc).__name__) from exc


def _head_bytes(response: httpcore.Response) -> bytes:
    """The head as ``-i`` writes it: curl's HTTP/1-style lines with CRLF, then a blank line."""
    status = f"{response.http_version} {response.status_code}".encode("ascii")
    lines = [status + b" " + response.reason if response.reason else status]
    lines.extend(name + b": " + value for name, value in response.headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _verbose(job: Job, response: httpcore.Response) -> None:
    if job.prefer_http2 and response.http_version != "HTTP/2":
        sys.stderr.write(f"* server did not offer HTTP/2; used {response.http_version}\n")
    text = _head_bytes(response).decode("latin-1").replace("\r\n", "\n")
    sys.stderr.write(text)
    sys.stderr.flush()


def _client(job: Job) -> httpcore.Client:
    try:
        return httpcore.Client(
            ssl=job.ssl,
            timeout=_timeout(job),
            http1=job.http1,
            http2=job.http2,
            proxy=job.proxy,
            uds=job.unix_socket,
        )
    except (httpcore.ProxyError, httpcore.UnsupportedProtocol) as exc:
        if job.proxy is None:
            raise
        # Before any connection: the proxy URL itself is unusable, curl's 5.
        raise Failure(Exit.COULDNT_RESOLVE_PROXY, str(exc), type(exc).__name__) from exc


def _transfer(job: Job, report: Report) -> None:
    """The request, the head and body to the output; raises on any failure."""
    body = _read_body(job.data)
    headers = list(job.headers)
    if body is not None and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))  # as curl does
    deadline = Deadline(job.max_time, report.started)
    with deadline.armed(), _client(job) as client:
        with client.request(
            job.method, job.url, headers=headers, body=body, stream=True
        ) as response:
            head = _head_bytes(response)
            report.head_at = time.monotonic()
            report.status = response.status_code
            report.http_version = response.http_version
            report.headers = response.headers
            report.size_header = len(head)
            if job.verbose:
                _verbose(job, response)
            if job.fail and response.status_code >= 400:
                message = f"The requested URL returned error: {response.status_code}"
                raise Failure(Exit.HTTP_RETURNED_ERROR, message)
            with Output(job.output) as out:
                if job.include:
                    out.write(head)
                if not job.head_only:
                    for chunk in response.stream():
                        deadline.check()
                        out.write(chunk)
                        report.size_download += len(chunk)
            deadline.check()


# -- failures -------------------------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what led to it: the engine's error, then the original OSError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _resolve_code(text: str, job: Job) -> Exit:
    """5 if the name that failed to resolve was the proxy's, else 6."""
    if job.proxy is None:
        return Exit.COULDNT_RESOLVE_HOST
    if "proxy" in text.lower():
        return Exit.COULDNT_RESOLVE_PROXY
    if _scheme(job.proxy) != "socks5":
        # Any other proxy resolves the target itself: ours was the only lookup.
        return Exit.COULDNT_RESOLVE_PROXY
    names_proxy = _host(job.proxy) in text and _host(job.url) not in text
    return Exit.COULDNT_RESOLVE_PROXY if names_proxy else Exit.COULDNT_RESOLVE_HOST


def _connect_code(exc: httpcore.ConnectError, job: Job) -> Exit:
    """ConnectError covers DNS, TCP and TLS alike; the causes tell which it was."""
    chain = list(_causes(exc))
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, (ssl.SSLError, ssl.CertificateError)) for e in chain):
        return Exit.SSL_CONNECT_ERROR
    if any(isinstance(e, socket.gaierror) for e in chain):
        return _resolve_code(text, job)
    if re.search(r"cannot resolve|name resolution", text, re.IGNORECASE):
        return _resolve_code(text, job)
    if re.search(r"\bTLS\b|\bSSL\b|certificate", text):
        return Exit.SSL_CONNECT_ERROR
    return Exit.COULDNT_CONNECT


def _exit_code(exc: Exception, job: Job) -> Exit:
    if isinstance(exc, httpcore.TimeoutException):
        return Exit.OPERATION_TIMEDOUT
    if isinstance(exc, httpcore.ProxyError):
        return Exit.PROXY
    if isinstance(exc, httpcore.UnsupportedProtocol):
        bad_scheme = _scheme(job.url) not in ("http", "https")
        return Exit.UNSUPPORTED_PROTOCOL if bad_scheme else Exit.URL_MALFORMAT
    if isinstance(exc, httpcore.ConnectError):
        return _connect_code(exc, job)
    if isinstance(exc, httpcore.RemoteProtocolError):
        if re.search(r"without (sending )?a response", str(exc)):
            return Exit.GOT_NOTHING
        if re.search(r"complete message body", str(exc)):
            return Exit.PARTIAL_FILE  # closed before Content-Length's end
        return Exit.WEIRD_SERVER_REPLY
    if isinstance(exc, httpcore.ReadError):
        return Exit.RECV_ERROR
    if isinstance(exc, httpcore.WriteError):
        return Exit.SEND_ERROR
    return Exit.FAILED_INIT  # LocalProtocolError, bad values: the request could not be made


def _silence_stdout() -> None:
    """After a broken pipe, keep the interpreter from failing again when it
    flushes stdout at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _write_out(job: Job, report: Report) -> None:
    if job.write_out is None:
        return
    text = "".join(part(report) for part in job.write_out)
    sys.stdout.buffer.write(text.encode("utf-8", "replace"))
    sys.stdout.buffer.flush()


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    job = _job(parser, parser.parse_args(argv))
    report = Report(method=job.method, url=job.url)
    failure: Failure | None = None
    try:
        _transfer(job, report)
    except Failure as exc:
        failure = exc
    except MaxTimeExceeded as exc:
        elapsed = time.monotonic() - report.started
        message = (
            f"operation timed out after {elapsed:.3f} seconds (-m {job.max_time:g})"
            f" with {report.size_download} bytes received"
        )
        failure = Failure(Exit.OPERATION_TIMEDOUT, message, type(exc).__name__)
    except KeyboardInterrupt as exc:
        failure = Failure(Exit.INTERRUPTED, "interrupted", type(exc).__name__)
    except Exception as exc:  # one line, never a traceback
        failure = Failure(_exit_code(exc, job), str(exc), type(exc).__name__)
    report.finished = time.monotonic()
    if failure is not None:
        report.exit_code, report.error = int(failure.code), failure.message
        if failure.stdout_closed:
            _silence_stdout()
        if job.show_errors:
            sys.stderr.write(failure.line())
            sys.stderr.flush()
        if failure.stdout_closed or failure.code == Exit.INTERRUPTED:
            return failure.code
    try:
        _write_out(job, report)
    except OSError:
        _silence_stdout()
        return failure.code if failure is not None else Exit.WRITE_ERROR
    return failure.code if failure is not None else Exit.OK


if __name__ == "__main__":
    sys.exit(main())
