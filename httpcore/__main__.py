"""A tiny curl built on :class:`httpcore.Client`.

    python -m httpcore URL [-X METHOD] [-H 'Name: value'] [-d DATA | -d @FILE]
                           [--http1 | --http2] [--cacert FILE] [-k] [-o FILE] [-v]

The body is streamed to stdout (or to ``-o FILE``) chunk by chunk, as bytes.
``-v`` writes the status line and the response headers to stderr. Any failure
prints one line, ``httpcore: error: <ExceptionType>: <message>``, to stderr and
exits with status 1 (130 on Ctrl-C); there is no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import ssl
import sys
from collections.abc import Iterator
from typing import BinaryIO

import httpcore

PROG = "httpcore"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Send one HTTP request with httpcore and write the response body.",
    )
    parser.add_argument("url", metavar="URL", help="http:// or https:// URL")
    parser.add_argument(
        "-X",
        "--request",
        dest="method",
        metavar="METHOD",
        help="request method (default: GET, or POST with -d)",
    )
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="extra request header; repeatable",
    )
    parser.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        help="request body; @FILE reads it from FILE (sent as is, binary)",
    )
    version = parser.add_mutually_exclusive_group()
    version.add_argument("--http1", action="store_true", help="use HTTP/1.1 only")
    version.add_argument(
        "--http2",
        action="store_true",
        help="use HTTP/2 only (prior knowledge on http://, ALPN h2 on https://)",
    )
    parser.add_argument("--cacert", metavar="FILE", help="verify the server with this CA bundle")
    parser.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server certificate",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print status line and headers to stderr",
    )
    return parser


def _parse_header(parser: argparse.ArgumentParser, raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    name = name.strip()
    if not sep or not name:
        parser.error(f"bad header {raw!r}: expected 'Name: value'")
    return name, value.strip()


def _read_body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data.startswith("@"):
        path = data[1:]
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    return data.encode("utf-8")


def _ssl_context(cacert: str | None, insecure: bool) -> ssl.SSLContext | None:
    if cacert is None and not insecure:
        return None  # the library's default: certifi, hostname verification
    context = ssl.create_default_context(cafile=cacert)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _print_head(response: httpcore.Response) -> None:
    reason = response.reason.decode("latin-1")
    status = f"{response.http_version} {response.status_code}"
    lines = [f"{status} {reason}" if reason else status]
    lines.extend(
        f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in response.headers
    )
    sys.stderr.write("\n".join(lines) + "\n\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    if path is None:
        yield sys.stdout.buffer
        return
    with open(path, "wb") as f:
        yield f


def _run(args: argparse.Namespace, headers: list[tuple[str, str]]) -> None:
    body = _read_body(args.data)
    method = args.method or ("POST" if body is not None else "GET")
    if body is not None and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))  # as curl does
    context = _ssl_context(args.cacert, args.insecure)
    with httpcore.Client(ssl=context, http1=not args.http2, http2=not args.http1) as client:
        with client.request(method, args.url, headers=headers, body=body, stream=True) as response:
            if args.verbose:
                _print_head(response)
            # The file is only created once the server has answered.
            with _output(args.output) as out:
                for chunk in response.stream():
                    out.write(chunk)
                    out.flush()


def _fail(exc: BaseException, message: str | None = None) -> None:
    text = message if message is not None else str(exc)
    text = " ".join(text.split()) or "(no message)"
    sys.stderr.write(f"{PROG}: error: {type(exc).__name__}: {text}\n")
    sys.stderr.flush()


def _silence_stdout() -> None:
    # After a broken pipe, keep the interpreter from failing again when it
    # flushes stdout at exit.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    headers = [_parse_header(parser, raw) for raw in args.headers]
    try:
        _run(args, headers)
    except KeyboardInterrupt as exc:
        _fail(exc, "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        _silence_stdout()
        _fail(exc, "output closed")
        return EXIT_ERROR
    except (httpcore.HTTPCoreError, OSError) as exc:
        _fail(exc)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
