"""`python -m httpcore`, run in a subprocess against real servers on 127.0.0.1.

The servers are the raw-socket servers of ``tests/servers/raw.py`` (fixture
``raw`` in conftest), which record every request exactly as it came off the
wire, a few more in ``tests/servers/cli_servers.py`` (Unix socket, blackhole,
SOCKS5), hypercorn (``http_server``: HTTP/1.1 only; ``h2_server``: h2 and h2c) and
tinyproxy; TLS uses the session's trustme CA. Exit codes are curl's (see the
table in ``httpcore/__main__.py``). How options become ``httpcore.Client``
arguments is checked in-process, with a stand-in Client.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import httpcore
from httpcore import __main__ as cli
from tests.conftest import python_subprocess
from tests.servers.cli_servers import (
    TRICKLE_LENGTH,
    blackhole,
    closes_unanswered,
    socks5_then_http,
    trickle,
    unix_server,
)
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.process import run_tinyproxy
from tests.servers.raw import (
    RawConnection,
    RawRequest,
    RawServer,
    closes_mid_body,
    garbage_status_line,
    never_answers,
)

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


def assert_one_line_error(
    result: subprocess.CompletedProcess[bytes], code: int, error: str, stdout: bytes = b""
) -> str:
    """Exit ``code``, one line ``httpcore: (code) error: ...`` on stderr; ``error`` is a regex."""
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert re.match(rf"httpcore: \({code}\) {error}: ", stderr), stderr
    assert result.stdout == stdout
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


def test_untrusted_certificate_exits_35(cli_tls_server: RawServer) -> None:
    # Not signed by anything in certifi's bundle.
    result = run_cli(cli_tls_server.url("/hello"))
    stderr = assert_one_line_error(result, 35, "ConnectError")
    assert "certificate" in stderr
    assert cli_tls_server.all_requests() == []


def test_https_to_a_plain_http_port_exits_35(http_server: HTTPServer) -> None:
    result = run_cli(f"https://127.0.0.1:{http_server.port}/echo")
    assert_one_line_error(result, 35, "ConnectError")


def test_insecure_skips_verification(cli_tls_server: RawServer) -> None:
    result = run_cli(cli_tls_server.url("/hello"), "-k")
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO


def test_http1_flag_over_tls(cli_tls_server: RawServer, cacert: str) -> None:
    result = run_cli(cli_tls_server.url("/hello"), "--cacert", cacert, "--http1", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().startswith("HTTP/1.1 200 OK\n")


# -- failures -------------------------------------------------------------------


def test_refused_port_exits_7(closed_port: int) -> None:
    result = run_cli(f"http://127.0.0.1:{closed_port}/")
    assert "ConnectionRefusedError" in assert_one_line_error(result, 7, "ConnectError")


def test_unresolvable_host_exits_6() -> None:
    result = run_cli("http://nonexistent.invalid/")
    assert "nonexistent.invalid" in assert_one_line_error(result, 6, "ConnectError")


def test_unsupported_scheme_exits_1() -> None:
    assert_one_line_error(run_cli("ftp://127.0.0.1/file"), 1, "UnsupportedProtocol")


def test_malformed_url_exits_3() -> None:
    assert_one_line_error(run_cli("http://[::1/"), 3, "UnsupportedProtocol")


def test_empty_reply_exits_52(raw: RawFactory) -> None:
    server = raw(closes_unanswered)
    assert_one_line_error(run_cli(server.url("/")), 52, "RemoteProtocolError")


def test_garbage_reply_exits_8(raw: RawFactory) -> None:
    server = raw(garbage_status_line)
    assert_one_line_error(run_cli(server.url("/")), 8, "RemoteProtocolError")


def test_body_cut_short_exits_18_after_what_arrived(raw: RawFactory) -> None:
    server = raw(closes_mid_body)
    result = run_cli(server.url("/"))
    assert_one_line_error(result, 18, "RemoteProtocolError", stdout=b"x" * 10)


def test_missing_data_file_exits_26(cli_server: RawServer, tmp_path: Path) -> None:
    result = run_cli(cli_server.url("/upload"), "-d", f"@{tmp_path / 'nope.bin'}")
    assert_one_line_error(result, 26, "FileNotFoundError")
    assert cli_server.accepted == 0  # failed before connecting


def test_unwritable_output_exits_23(cli_server: RawServer, tmp_path: Path) -> None:
    result = run_cli(cli_server.url("/hello"), "-o", str(tmp_path / "no" / "such" / "dir"))
    assert_one_line_error(result, 23, "FileNotFoundError")


def test_closed_stdout_exits_23(cli_server: RawServer) -> None:
    # 1 MiB does not fit in a pipe: the CLI is still writing when the reader leaves.
    with python_subprocess("-m", "httpcore", cli_server.url("/binary")) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(1000) == BINARY[:1000]
        proc.stdout.close()
        stderr = proc.stderr.read()
        proc.wait(20)
    assert proc.returncode == 23, stderr
    assert stderr == b"httpcore: (23) BrokenPipeError: output closed\n"


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
    assert stderr == b"httpcore: (130) KeyboardInterrupt: interrupted\n"
    assert stdout == b""


# -- -i, -I, -w, -f, -s -----------------------------------------------------------

HELLO_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Length: %d\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"X-Test: yes\r\n"
    b"\r\n" % len(HELLO)
)


def test_include_writes_the_head_before_the_body(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/hello"), "-i")
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO_HEAD + HELLO
    assert result.stderr == b""


def test_head_option_sends_head_and_writes_the_head(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/hello"), "-I")
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO_HEAD
    assert only_request(cli_server).request_line == b"HEAD /hello HTTP/1.1"


def test_write_out_after_the_body(cli_server: RawServer) -> None:
    fmt = r"%{http_code} %{http_version} %{size_download} %{time_total} %header{x-test} 100%%\n"
    result = run_cli(cli_server.url("/hello"), "-w", fmt, "-m", "30", "--connect-timeout", "20")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(HELLO)
    written = result.stdout[len(HELLO) :].decode()
    assert re.fullmatch(rf"200 1\.1 {len(HELLO)} (\d+\.\d{{6}}) yes 100%\n", written), written
    assert 0 < float(written.split()[3]) < 30


def test_write_out_without_a_response_says_000(closed_port: int) -> None:
    result = run_cli(f"http://127.0.0.1:{closed_port}/", "-s", "-w", r"%{http_code} %{exitcode}")
    assert result.returncode == 7
    assert result.stdout == b"000 7"


def test_fail_on_404_exits_22_without_output(cli_server: RawServer, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    result = run_cli(
        cli_server.url("/missing"), "-f", "-i", "-o", str(target), "-w", "%{http_code}"
    )
    assert result.returncode == 22, result.stderr
    assert result.stderr == b"httpcore: (22) The requested URL returned error: 404\n"
    assert result.stdout == b"404"  # -w still reports
    assert not target.exists()


def test_fail_lets_success_through(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/hello"), "-f")
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO


def test_silent_hides_the_error_but_keeps_the_code(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/missing"), "-f", "-s")
    assert result.returncode == 22
    assert result.stderr == b""
    assert result.stdout == b""


def test_show_error_with_silent_prints_it(closed_port: int) -> None:
    result = run_cli(f"http://127.0.0.1:{closed_port}/", "-sS")
    assert_one_line_error(result, 7, "ConnectError")


# -- timeouts -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_max_time_stops_a_server_that_never_answers(raw: RawFactory) -> None:
    server = raw(never_answers)
    started = time.monotonic()
    result = run_cli(server.url("/"), "-m", "0.5", "-w", "%{http_code}")
    elapsed = time.monotonic() - started
    assert_one_line_error(result, 28, r"(MaxTimeExceeded|ReadTimeout)", stdout=b"000")
    assert elapsed < 10
    assert len(server.all_requests()) == 1


@pytest.mark.timeout(30)
def test_max_time_bounds_the_whole_transfer(raw: RawFactory) -> None:
    # A byte every 50 ms never trips a per-read timeout: only the CLI's clock stops it.
    server = raw(trickle)
    started = time.monotonic()
    result = run_cli(server.url("/"), "-m", "0.5")
    elapsed = time.monotonic() - started
    stderr = result.stderr.decode()
    assert result.returncode == 28, stderr
    assert stderr.startswith("httpcore: (28) MaxTimeExceeded: ") and stderr.count("\n") == 1
    assert 0 < len(result.stdout) < TRICKLE_LENGTH
    assert set(result.stdout) == {ord("x")}
    assert elapsed < 10


@pytest.mark.timeout(30)
def test_connect_timeout_on_a_blackhole() -> None:
    with blackhole() as port:
        if port is None:
            pytest.skip("this kernel completes connects beyond the listen backlog")
        started = time.monotonic()
        result = run_cli(f"http://127.0.0.1:{port}/", "--connect-timeout", "0.5")
        elapsed = time.monotonic() - started
    assert_one_line_error(result, 28, "ConnectTimeout")
    assert elapsed < 10


# -- HTTP versions --------------------------------------------------------------------


def test_http2_over_tls(h2_server: HTTPServer, cacert: str) -> None:
    result = run_cli(
        h2_server.https_url("/echo"), "--http2", "--cacert", cacert, "-o", os.devnull,
        "-w", "%{http_version}", "-v",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"2"
    assert result.stderr.decode().startswith("HTTP/2 200\n")


def test_http2_prior_knowledge_speaks_h2c(h2_server: HTTPServer) -> None:
    result = run_cli(h2_server.url("/echo"), "--http2-prior-knowledge", "-w", "%{http_version}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"2")
    assert b'"http_version": "2"' in result.stdout  # what the server saw


def test_http2_falls_back_to_http11_when_not_offered(http_server: HTTPServer, cacert: str) -> None:
    result = run_cli(
        http_server.https_url("/echo"), "--http2", "--cacert", cacert, "-o", os.devnull,
        "-w", "%{http_version}", "-v",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"1.1"
    lines = result.stderr.decode().splitlines()
    assert lines[0] == "* server did not offer HTTP/2; used HTTP/1.1"
    assert lines[1].startswith("HTTP/1.1 200")


def test_http11_only_against_an_h2_server(h2_server: HTTPServer, cacert: str) -> None:
    result = run_cli(
        h2_server.https_url("/echo"), "--http1.1", "--cacert", cacert, "-o", os.devnull,
        "-w", "%{http_version}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"1.1"


# -- where to connect: Unix socket, proxies ---------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A directory for a Unix socket: pytest's tmp_path can exceed the 108-byte sun_path."""
    with tempfile.TemporaryDirectory(prefix="hc-cli-") as path:
        yield path


def test_unix_socket(short_dir: str) -> None:
    path = os.path.join(short_dir, "s")
    with unix_server(cli_app, path) as server:
        result = run_cli("http://unix.example/hello", "--unix-socket", path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == HELLO
        request = only_request(server)
    assert request.request_line == b"GET /hello HTTP/1.1"
    assert request.header(b"Host") == [b"unix.example"]


def recording_forward_proxy(conn: RawConnection) -> None:
    conn.read_request()
    conn.respond(b"proxied\n")


def test_forwarding_proxy_without_scheme(raw: RawFactory) -> None:
    proxy = raw(recording_forward_proxy)
    result = run_cli("http://origin.invalid:8080/a?b=1", "-x", f"127.0.0.1:{proxy.port}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"proxied\n"
    request = only_request(proxy)
    assert request.request_line == b"GET http://origin.invalid:8080/a?b=1 HTTP/1.1"
    assert request.header(b"Host") == [b"origin.invalid:8080"]


@pytest.fixture(scope="module")
def cli_tinyproxy(
    tmp_path_factory: pytest.TempPathFactory, http_server: HTTPServer
) -> Iterator[int]:
    """tinyproxy on loopback, no credentials, CONNECT allowed to ``http_server``'s TLS port."""
    with run_tinyproxy(tmp_path_factory.mktemp("cli-tinyproxy"), http_server.tls_port) as port:
        yield port


def test_connect_tunnel_through_a_real_proxy(
    cli_tinyproxy: int, http_server: HTTPServer, cacert: str
) -> None:
    result = run_cli(
        http_server.https_url("/echo"), "-x", f"http://127.0.0.1:{cli_tinyproxy}",
        "--cacert", cacert, "-w", "\n%{http_code}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body, _, code = result.stdout.rpartition(b"\n")
    assert code == b"200"
    assert b'"path": "/echo"' in body


def refusing_connect_proxy(conn: RawConnection) -> None:
    request = conn.read_request()
    assert request.method == b"CONNECT"
    conn.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")


def test_proxy_refusing_connect_exits_97(raw: RawFactory) -> None:
    proxy = raw(refusing_connect_proxy)
    result = run_cli("https://origin.invalid/", "-x", f"http://127.0.0.1:{proxy.port}")
    assert "502" in assert_one_line_error(result, 97, "ProxyError")
    assert only_request(proxy).request_line == b"CONNECT origin.invalid:443 HTTP/1.1"


def test_unresolvable_proxy_exits_5(cli_server: RawServer) -> None:
    result = run_cli(cli_server.url("/hello"), "-x", "http://nonexistent.invalid:3128")
    assert_one_line_error(result, 5, "ConnectError")
    assert cli_server.accepted == 0


def test_socks5h_proxy_leaves_the_name_to_the_proxy(raw: RawFactory) -> None:
    proxy = raw(socks5_then_http)
    result = run_cli("http://origin.invalid:8080/s", "-x", f"socks5h://127.0.0.1:{proxy.port}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"via socks\n"
    # CONNECT (1) to a domain name (address type 3), not resolved here
    assert proxy.wait_event("socks-connect") == (1, 3, "origin.invalid", 8080)
    assert only_request(proxy).header(b"Host") == [b"origin.invalid:8080"]


# -- options -> Client arguments (in-process, a stand-in Client) ---------------------------


class _Stop(httpcore.ConnectError):
    pass


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], {"timeout": None, "ssl": None, "http1": True, "http2": True, "proxy": None}),
        (["-m", "3"], {"timeout": httpcore.Timeout(3.0)}),
        (
            ["-m", "3", "--connect-timeout", "1.5"],
            {"timeout": httpcore.Timeout(connect=1.5, read=3.0, write=3.0, pool=3.0)},
        ),
        (
            ["--connect-timeout", "2"],
            {"timeout": httpcore.Timeout(connect=2.0, read=None, write=None, pool=None)},
        ),
        (["--connect-timeout", "9", "-m", "4"], {"timeout": httpcore.Timeout(4.0)}),
        (["-m", "0"], {"timeout": None}),  # 0: no limit, as in curl
        (["-k"], {"ssl": False}),
        (["--http1.1"], {"http1": True, "http2": False}),
        (["--http1"], {"http1": True, "http2": False}),
        (["--http2"], {"http1": True, "http2": True}),
        (["--http2-prior-knowledge"], {"http1": False, "http2": True}),
        (["-x", "proxy.invalid:3128"], {"proxy": "http://proxy.invalid:3128"}),
        (["-x", "socks5h://p.invalid:1080"], {"proxy": "socks5h://p.invalid:1080"}),
        (["-x", ""], {"proxy": None}),
        (["--unix-socket", "/run/x.sock"], {"uds": "/run/x.sock"}),
    ],
)
def test_options_become_client_arguments(
    options: list[str], expected: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def client(**kwargs: Any) -> httpcore.Client:
        seen.update(kwargs)
        raise _Stop("stand-in client")

    monkeypatch.setattr(httpcore, "Client", client)
    assert cli.main(["-s", "http://127.0.0.1:1/", *options]) == 7
    assert {name: seen[name] for name in expected} == expected


def test_cacert_becomes_a_verifying_context(cacert: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def client(**kwargs: Any) -> httpcore.Client:
        seen.update(kwargs)
        raise _Stop("stand-in client")

    monkeypatch.setattr(httpcore, "Client", client)
    assert cli.main(["-s", "https://127.0.0.1:1/", "--cacert", cacert]) == 7
    context = seen["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-L"], "does not follow redirects"),
        (["-I", "-d", "x"], "cannot send -d data"),
        (["-w", "%{no_such_thing}"], "unknown --write-out variable"),
        (["-m", "soon"], "expected seconds"),
        (["--connect-timeout", "-1"], "expected seconds >= 0"),
        (["-x", "ftp://p.invalid"], "unsupported proxy scheme"),
        (["--http1.1", "--http2-prior-knowledge"], "not allowed with"),
    ],
)
def test_usage_errors_exit_2(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["http://127.0.0.1:1/", *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unusable_proxy_url_exits_5(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["http://127.0.0.1:1/", "-x", "http://"]) == 5
    err = capsys.readouterr().err
    assert err.startswith("httpcore: (5) ") and err.count("\n") == 1, err
