"""Running server binaries as child processes: free ports, readiness, shutdown.

Shared by ``conftest.py`` (hypercorn, nginx), ``h2nginx.py`` and ``h2others.py``
(nghttpd, h2o, Apache). A server runs in the foreground from a config in its own
directory, is polled with ``connect()`` until every port listens and is stopped
with SIGTERM (SIGKILL if it lingers) on the way out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import trustme


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", port))
                return
            except OSError:
                pass
        time.sleep(0.02)  # poll interval while the subprocess boots, not a sync point
    raise RuntimeError(f"server on port {port} did not start within {timeout}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def write_cert(cert: trustme.LeafCert, directory: Path) -> tuple[Path, Path]:
    """``directory/cert.pem`` (the chain) and ``directory/key.pem``."""
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


def binary(*names: str, extra: tuple[str, ...] = ()) -> str | None:
    """The first of ``names`` on PATH, else the first executable of ``extra``."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    for candidate in extra:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def check_config(argv: list[str]) -> None:
    """Run a server's config check (``nginx -t`` and the like); fail with its output."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stdout}{done.stderr}")


@contextlib.contextmanager
def running(
    argv: list[str], directory: Path, ports: list[int], log_name: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in ``directory``, output to ``directory/log_name``, until every
    port in ``ports`` listens; stopped on the way out."""
    with open(directory / log_name, "wb") as log:
        proc = subprocess.Popen(
            argv, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            for port in ports:
                wait_listening(port, proc)
            yield proc
        finally:
            stop_process(proc)


TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"


@contextlib.contextmanager
def run_tinyproxy(
    directory: Path, connect_port: int, basic_auth: tuple[str, str] | None = None
) -> Iterator[int]:
    """Debian's tinyproxy on loopback, CONNECT allowed to ``connect_port`` only;
    yields its port. Skips the test when tinyproxy is not installed."""
    import pytest

    if not Path(TINYPROXY).exists():
        pytest.skip("tinyproxy is not installed (scripts/_env.sh installs it)")
    port = free_port()
    auth = f"BasicAuth {basic_auth[0]} {basic_auth[1]}\n" if basic_auth else ""
    conf = directory / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nLogLevel Info\n"
        f'LogFile "{directory}/log"\nPidFile "{directory}/pid"\n{auth}'
        f"ConnectPort {connect_port}\nDisableViaHeader Yes\n"
    )
    with running([TINYPROXY, "-d", "-c", str(conf)], directory, [port], "stdout"):
        yield port
