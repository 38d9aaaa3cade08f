"""h2spec's client mode against the CLI (``python -m httpcore``), h2c and TLS.

h2spec's client mode (the ``h2specd`` binary of summerwind/h2spec, master)
listens on one port per test case, runs ``--exec CMD URL`` once per case and
plays a misbehaving HTTP/2 server to it. Each case must be over, client exited,
within h2spec's fixed 3 s, or h2spec stops the whole run with "Error: Timeout":
a client that hangs on a protocol error fails here, as it should.

The binary: ``$H2SPEC`` (path to ``h2specd``), else ``h2specd`` on PATH; the
test skips without it. h2spec's verdicts are lenient in one way: where it
expects a GOAWAY with some error code, a plain connection close also passes.

Each top-level section runs as its own h2specd, on its own block of ports,
so one aborted run costs one section. Every case must pass except those on
KNOWN_FAILURES, and those must still fail (so the list stays true).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from tests.servers.process import write_cert

ROOT = Path(__file__).resolve().parent.parent

# Top-level sections of h2spec's client suite, with how many cases each has
# (the size of the port block each run needs).
SECTIONS = {"client/1": 1, "client/4": 7, "client/5": 14, "client/6": 35}

# "client/<section>/<case>": one-line reason. Empty: every case passes.
KNOWN_FAILURES: dict[str, str] = {}

_HEADER = re.compile(r"^\s*(\d+(?:\.\d+)*)\. \S")
PASS, FAIL = "\u2714", "\u00d7"  # h2spec's check mark and multiplication sign
_CASE = re.compile(rf"^\s*(?:({PASS}|{FAIL}) )?(\d+): (.*)$")
_SUMMARY = re.compile(r"^(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _h2specd() -> str | None:
    path = os.environ.get("H2SPEC") or shutil.which("h2specd")
    if not path or not os.access(path, os.X_OK):
        return None
    return path


H2SPECD = _h2specd()

needs_h2specd = pytest.mark.skipif(
    H2SPECD is None,
    reason="h2spec client mode not available: set H2SPEC to an h2specd binary "
    "(summerwind/h2spec cmd/h2specd) or put h2specd on PATH",
)


@dataclass
class Case:
    id: str
    desc: str
    status: str  # "passed", "failed" or "skipped"
    details: list[str] = field(default_factory=list)


@dataclass
class Report:
    cases: dict[str, Case]
    summary: tuple[int, int, int, int] | None
    fatal: str | None


def parse(output: str) -> Report:
    """h2specd's stdout: the cases as they ran, the summary line, a fatal error."""
    cases: dict[str, Case] = {}
    summary = None
    fatal = None
    section = ""
    current: Case | None = None
    recap = False  # in the "Failures:" recap: the failed cases again, already seen
    for raw in output.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        if line.startswith("Failures:"):
            recap = True
            continue
        if line.startswith("Error: "):  # unindented: h2spec gave up on the run
            fatal = line
            break
        if m := _SUMMARY.match(line):
            summary = (int(m[1]), int(m[2]), int(m[3]), int(m[4]))
            break
        if recap:
            continue
        if m := _HEADER.match(line):
            section, current = m[1], None
            continue
        if m := _CASE.match(line):
            status = {PASS: "passed", FAIL: "failed", None: "skipped"}[m[1]]
            case_id = f"client/{section}/{m[2]}"
            current = cases[case_id] = Case(case_id, m[3], status)
            continue
        if current is not None and current.status == "failed" and line.strip():
            current.details.append(line.strip())
    return Report(cases, summary, fatal)


def _port_block(n: int) -> int:
    """The first of ``n`` consecutive free loopback ports, below the ephemeral range."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(50):
        base = random.randrange(10000, low - n)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no block of {n} free ports")


def _client_script(directory: Path, *args: str) -> Path:
    # h2spec splits --exec on spaces, with no quoting: a script keeps paths whole.
    script = directory / "client.sh"
    quoted = " ".join(f"'{a}'" for a in (sys.executable, "-m", "httpcore", *args))
    script.write_text(f'#!/bin/sh\nexec {quoted} "$@"\n')
    script.chmod(0o755)
    return script


def run_h2specd(section: str, argv_tls: list[str], client: Path) -> tuple[Report, str]:
    assert H2SPECD is not None
    if " " in str(client):
        pytest.skip(f"h2spec cannot run a command whose path has a space: {client}")
    n = SECTIONS[section]
    argv = [
        H2SPECD,
        "--host", "127.0.0.1",
        "--from-port", str(_port_block(n)),
        *argv_tls,
        "--exec", str(client),
        section,
    ]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, errors="replace", timeout=3 * n + 30
    )
    # After its summary h2specd logs each listener's accept error until it exits.
    noise = re.compile(r"^accept tcp .*: use of closed network connection$")
    kept = [ln for ln in (done.stdout + done.stderr).splitlines() if not noise.match(ln)]
    return parse(done.stdout), "\n".join(kept)


@pytest.fixture(params=["h2c", "tls"])
def h2spec_setup(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tls_ca: trustme.CA,
    server_cert: trustme.LeafCert,
) -> tuple[list[str], Path]:
    """(h2specd's TLS arguments, the client script) for h2c or TLS (ALPN h2)."""
    common = ("--http2-prior-knowledge", "--silent", "--output", os.devnull)
    if request.param == "h2c":
        return [], _client_script(tmp_path, *common)
    certfile, keyfile = write_cert(server_cert, tmp_path)
    cafile = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(cafile))
    client = _client_script(tmp_path, *common, "--cacert", str(cafile))
    return ["--tls", "--cert-file", str(certfile), "--cert-key-file", str(keyfile)], client


def test_parse() -> None:
    out = (
        "Generic tests for HTTP/2 client\n"
        "  5. Streams and Multiplexing\n"
        "    5.1. Stream States\n"
        f"      {PASS} 1: idle: Sends a DATA frame\n"
        f"      {FAIL} 2: idle: Sends a RST_STREAM frame\n"
        "        -> The endpoint MUST treat this as a connection error of type PROTOCOL_ERROR.\n"
        "           Expected: GOAWAY Frame (Error Code: PROTOCOL_ERROR)\n"
        "             Actual: Timeout\n"
        "      5.1.1. Stream Identifiers\n"
        "        3: skipped one\n"
        "Failures: \n"
        f"      {FAIL} 2: idle: Sends a RST_STREAM frame\n"
        "3 tests, 1 passed, 1 skipped, 1 failed\n"
    )
    report = parse(out)
    assert {c.id: c.status for c in report.cases.values()} == {
        "client/5.1/1": "passed",
        "client/5.1/2": "failed",
        "client/5.1.1/3": "skipped",
    }
    assert report.cases["client/5.1/2"].details[-1] == "Actual: Timeout"
    assert report.summary == (3, 1, 1, 1)
    assert parse("  1. Starting HTTP/2\n\nError: Timeout\n").fatal == "Error: Timeout"
    assert parse("1 tests, 1 passed, 0 skipped, 0 failed\n").summary == (1, 1, 0, 0)


@needs_h2specd
@pytest.mark.timeout(180)
@pytest.mark.parametrize("section", list(SECTIONS))
def test_h2spec_client(section: str, h2spec_setup: tuple[list[str], Path]) -> None:
    argv_tls, client = h2spec_setup
    report, output = run_h2specd(section, argv_tls, client)
    if report.fatal is not None:
        pytest.fail(
            f"h2spec stopped the run at {section}: {report.fatal} (a client still running "
            f"3 s into a case, or one that never connected)\n{output[-4000:]}"
        )
    assert report.summary is not None, f"no summary line from h2specd:\n{output[-4000:]}"
    assert report.summary[0] == SECTIONS[section] == len(report.cases), report.summary

    problems = []
    for case in report.cases.values():
        known = case.id in KNOWN_FAILURES
        if case.status == "failed" and not known:
            problems.append(f"{case.id} {case.desc}\n    " + "\n    ".join(case.details))
        elif case.status != "failed" and known:
            problems.append(f"{case.id} {case.desc}: {case.status}, remove from KNOWN_FAILURES")
        elif case.status == "skipped":
            problems.append(f"{case.id} {case.desc}: skipped")
    assert not problems, "\n".join(problems)
