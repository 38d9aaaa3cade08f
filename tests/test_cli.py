"""`python -m httpcore`, run in a subprocess against real servers on 127.0.0.1.

The servers are the raw-socket servers of ``tests/servers/raw.py`` (fixture
``raw`` in conftest), which record every request exactly as it came off the
wire; TLS uses the session's trustme CA.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from tests.conftest import python_subprocess
from tests.servers.handles import RawFactory
from tests.servers.raw import RawConnection, RawRequest, RawServer, never_answers

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO = b"hello from the cli test server\n"
BINARY = bytes(range(256)) * 4096  # 1 MiB, every byte value, CR/LF and NUL included


def cli_app(conn: RawConnection) -> None:
    """Keep-alive HTTP/1.1: /binary, /missing (404), HEAD, anything else HELLO."""
    while True:
        request = conn.read_request()
        status, body = b"200 OK", HELLO
        if request.target == b"/binary":
            body = BINARY
        elif request.target == b"/missing":
            status, body = b"404 Not Found", b"not here\n"
        extra = b"Content-Type: application/octet-stream\r\nX-Test: yes\r\n"
        if request.method == b"HEAD":
            conn.send(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra))
        else:
            conn.respond(body, status=status, extra=extra)


@pytest.fixture
def cli_server(raw: RawFactory) -> RawServer:
    return raw(cli_app)


@pytest.fixture
def cli_tls_server(raw: RawFactory, server_tls_context: ssl.SSLContext) -> RawServer:
    return raw(cli_app, tls=server_tls_context)


@pytest.fixture
def cacert(tls_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


def only_request(server: RawServer) -> RawRequest:
    [request] = server.all_requests()
    return request


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "httpcore", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[bytes], error: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert stderr.startswith(f"httpcore: error: {error}: "), stderr
    assert result.stdout == b""
    return stderr


# -- output -------------------------------------------------------------------


def test_body_on_stdout(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/hello"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO
    assert result.stderr == b""
    request = only_request(cli_server)
    assert request.request_line == b"GET /hello HTTP/1.1"
    assert request.body == b""
    assert request.header(b"Content-Length") == []
    assert request.header(b"Transfer-Encoding") == []


def test_binary_body_is_written_unchanged(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/binary"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == BINARY


def test_output_file(cli_server: RawServer, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    result = run_cli(cli_server.url("/binary"), "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert target.read_bytes() == BINARY


def test_http_error_status_still_prints_body_and_exits_zero(cli_server: RawServer) -> None:
    # Like curl without -f: a 404 is a response, not a failure.
    result = run_cli(cli_server.url("/missing"), "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"not here\n"
    assert result.stderr.decode().splitlines()[0] == "HTTP/1.1 404 Not Found"


def test_verbose_prints_status_and_headers_on_stderr(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/hello"), "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [
        "HTTP/1.1 200 OK",
        f"Content-Length: {len(HELLO)}",
        "Content-Type: application/octet-stream",
        "X-Test: yes",
        "",
    ]


def test_head_request_has_no_body(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/hello"), "-X", "HEAD", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert f"Content-Length: {len(HELLO)}" in result.stderr.decode().splitlines()
    assert only_request(cli_server).method == b"HEAD"


# -- what is sent ---------------------------------------------------------------


def test_headers_are_sent(cli_server: RawServer) -> None:
    result = run_cli(
        cli_server.url("/hello"),
        "-H", "X-One: first value",
        "-H", "X-Two:second",
        "-H", "Accept: text/plain",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    request = only_request(cli_server)
    assert request.header(b"X-One") == [b"first value"]
    assert request.header(b"X-Two") == [b"second"]
    assert request.header(b"Accept") == [b"text/plain"]
    assert request.header(b"Host") == [f"127.0.0.1:{cli_server.port}".encode()]


def test_data_is_posted(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/submit"), "-d", "name=value&x=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO
    request = only_request(cli_server)
    assert request.request_line == b"POST /submit HTTP/1.1"
    assert request.body == b"name=value&x=1"
    assert request.header(b"Content-Length") == [b"14"]
    assert request.header(b"Content-Type") == [b"application/x-www-form-urlencoded"]


def test_data_from_file_is_sent_unchanged(cli_server: RawServer, tmp_path: Path) -> None:
    payload = b"\x00\r\nbinary\xff\r\n\r\n" * 1000
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    result = run_cli(
        cli_server.url("/upload"),
        "-X", "PUT",
        "-d", f"@{source}",
        "-H", "Content-Type: application/octet-stream",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO
    request = only_request(cli_server)
    assert request.method == b"PUT"
    assert request.body == payload
    assert request.header(b"Content-Type") == [b"application/octet-stream"]
    assert request.header(b"Content-Length") == [str(len(payload)).encode()]


# -- TLS ------------------------------------------------------------------------


def test_cacert_verifies_the_server(cli_tls_server: RawServer, cacert: str) -> None:
    result = run_cli(cli_tls_server.url("/hello"), "--cacert", cacert, "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO
    assert result.stderr.decode().startswith("HTTP/1.1 200 OK\n")


def test_untrusted_certificate_fails_in_one_line(cli_tls_server: RawServer) -> None:
    # Not signed by anything in certifi's bundle.
    result = run_cli(cli_tls_server.url("/hello"))
    assert_one_line_error(result, "ConnectError")
    assert cli_tls_server.all_requests() == []


def test_insecure_skips_verification(cli_tls_server: RawServer) -> None:
    result = run_cli(cli_tls_server.url("/hello"), "-k")
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO


def test_http1_flag_over_tls(cli_tls_server: RawServer, cacert: str) -> None:
    result = run_cli(cli_tls_server.url("/hello"), "--cacert", cacert, "--http1", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().startswith("HTTP/1.1 200 OK\n")


# -- failures -------------------------------------------------------------------


def test_closed_port_is_one_line_error(closed_port: int) -> None:
    assert_one_line_error(run_cli(f"http://127.0.0.1:{closed_port}/"), "ConnectError")


def test_unsupported_scheme_is_one_line_error() -> None:
    assert_one_line_error(run_cli("ftp://127.0.0.1/file"), "UnsupportedProtocol")


def test_missing_data_file_is_one_line_error(cli_server: RawServer, tmp_path: Path) -> None:
    result = run_cli(cli_server.url("/upload"), "-d", f"@{tmp_path / 'nope.bin'}")
    assert_one_line_error(result, "FileNotFoundError")
    assert cli_server.accepted == 0  # failed before connecting


def test_unwritable_output_is_one_line_error(cli_server: RawServer, tmp_path: Path) -> None:
    result = run_cli(cli_server.url("/hello"), "-o", str(tmp_path / "no" / "such" / "dir"))
    assert_one_line_error(result, "FileNotFoundError")


def test_malformed_header_argument_is_a_usage_error() -> None:
    result = run_cli("http://127.0.0.1:1/", "-H", "no colon here")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr.decode()
    assert "expected 'Name: value'" in result.stderr.decode()


def test_http1_and_http2_are_exclusive() -> None:
    result = run_cli("http://127.0.0.1:1/", "--http1", "--http2")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr.decode()


@pytest.mark.skipif(os.name != "posix", reason="needs SIGINT delivery to a child process")
def test_ctrl_c_exits_130_without_traceback(raw: RawFactory) -> None:
    server = raw(never_answers)
    with python_subprocess("-m", "httpcore", server.url("/"), "-v", stdin=None) as proc:
        server.wait_event("request-received", timeout=20)
        # The whole request reached the server: the CLI now waits for the head.
        assert len(server.all_requests()) == 1, "the CLI did not send a whole request"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert stderr == b"httpcore: error: KeyboardInterrupt: interrupted\n"
    assert stdout == b""
