"""The examples, each run as ``python examples/NAME.py --quick`` (it starts its
own local server), with assertions on what it prints."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

import httpcore
from tests.conftest import python_subprocess


def run_example(name: str, *args: str, timeout: float = 45) -> tuple[str, str]:
    """``python examples/NAME.py ARGS``: (stdout, stderr); fails unless it exits 0."""
    with python_subprocess(f"examples/{name}.py", *args, stdin=None) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{name} ran over {timeout} s\n{out.decode()}\n{err.decode()}")
    stdout, stderr = out.decode(), err.decode(errors="replace")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert stdout.rstrip().endswith("OK"), stdout
    return stdout, stderr


def test_sync_threads_share_one_http2_connection() -> None:
    out, err = run_example("sync_threads", "--quick")
    assert "64 threads x 10 requests on one Client: 640/640 OK, HTTP/2," in out, out
    assert re.search(r", \d+ requests/s\n", out), out
    assert "TCP connections: 1\n" in out, out
    [info] = re.findall(r"ConnectionInfo\(.*\)", out)
    assert "http_version='HTTP/2'" in info and "requests_served=641" in info, info
    assert err == "", err


def test_two_loops_and_a_thread_share_the_default_engine() -> None:
    out, err = run_example("two_loops", "--quick")
    ports = dict(
        re.findall(
            r"^(loop-1|loop-2|sync) .*: \d+/\d+ OK, HTTP/2, server saw client ports \[(\d+)\]$",
            out,
            re.M,
        )
    )
    assert set(ports) == {"loop-1", "loop-2", "sync"}, out
    assert "loop-1 (100 requests" in out and "100/100 OK" in out and "20/20 OK" in out, out
    assert ports["loop-1"] == ports["loop-2"] != ports["sync"], (
        ports
    )  # one shared HTTP/2 connection
    assert "met half-way: all three ran at once" in out, out
    assert (
        "PoolManager (both loops): 1 connection(s) (as each loop saw it: loop-1: 1, loop-2: 1)"
        in out
    )
    assert "requests_served=200)" in out and "requests_served=21)" in out, out
    [engine] = re.findall(r"^engine threads: (.*)$", out, re.M)
    assert re.fullmatch(r"httpcore-engine \(native id \d+\)", engine), engine
    [writers] = re.findall(r"^httpcore log records written by: (.*)$", out, re.M)
    assert re.fullmatch(r"httpcore-engine \(\d+ records\)", writers), writers
    assert err == "", err


def test_download_resumes_with_range_and_verifies_checksum() -> None:
    out, err = run_example("download", "--quick")
    size, cut = 16 * 1024 * 1024, int(16 * 1024 * 1024 * 0.4)
    [expected] = re.findall(r"^expected sha256 .*: ([0-9a-f]{64})$", out, re.M)
    lines = out.splitlines()
    assert re.fullmatch(
        rf"GET http://127\.0\.0\.1:\d+/file -> HTTP/1\.1 200, Content-Length: {size}", lines[2]
    ), out
    assert lines[3].startswith(
        f"interrupted at {cut} bytes of {size} (40.0%): RemoteProtocolError: "
    ), out
    assert re.fullmatch(
        rf'GET http://127\.0\.0\.1:\d+/file Range: bytes={cut}- If-Range: "{expected[:16]}" -> '
        rf"HTTP/1\.1 206, Content-Range: bytes {cut}-{size - 1}/{size}, "
        rf"Content-Length: {size - cut}",
        lines[4],
    ), out
    assert f"downloaded {size} bytes in 2 request(s)" in lines[5], out
    assert lines[6] == f"sha256 {expected}: OK", out
    # the progress bar: redrawn in place on stderr, one line per request
    bars = err.split("\n")
    assert bars[-1] == "" and len(bars) == 3, err
    assert bars[0].split("\r")[-1].startswith("  40.0% ["), err
    last = bars[1].split("\r")[-1]
    assert re.match(r" 100\.0% \[#{30}\] 16\.0 MiB / 16\.0 MiB  [\d.]+ MiB/s  ETA 0:00:00", last), (
        err
    )


@pytest.mark.skipif(
    not hasattr(httpcore, "RequestsAdapter"), reason="httpcore.RequestsAdapter not there yet"
)
def test_requests_session_mounts_the_adapter() -> None:
    pytest.importorskip("requests")
    out, err = run_example("requests_session", "--quick")
    [before] = re.findall(
        r"before .*: 40/40 OK in [\d.]+ s; the server saw HTTP/1\.1 on (\d+) TCP connection\(s\)$",
        out,
        re.M,
    )
    assert 1 < int(before) <= 8, out  # urllib3: a connection per thread
    assert re.search(
        r"after .*httpcore\.RequestsAdapter\(\)\)\): 40/40 OK in [\d.]+ s; "
        r"the server saw HTTP/2 on 1 TCP connection\(s\)$",
        out,
        re.M,
    ), out
    assert "Traceback" not in err, err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn forks")
def test_wsgi_app_demo() -> None:
    pytest.importorskip("gunicorn")
    out, err = run_example("wsgi_app", "--quick")
    assert out.count("SIGTERM: exit code 0, no traceback") == 2, out
    workers = re.findall(
        r"^  worker pid (\d+): engine thread (\d+), \d+ requests, "
        r"upstream connections from ports \[([\d, ]+)\]$",
        out,
        re.M,
    )
    assert len(workers) >= 2, out
    assert len({engine for _, engine, _ in workers}) == len(workers), out
    assert "none the master's; upstream connections shared between processes: none" in out, out
    assert re.search(r"16 requests \(HTTP/2\), peak \d+ upstream calls in flight at once", out), out
    assert "  client.connections(): 1\n" in out, out
    assert re.search(r"the upstream saw connections from ports \[\d+\]$", out, re.M), out
    assert "Traceback" not in err, err
