"""Unchanged ``requests`` code made HTTP/2 by mounting ``httpcore.RequestsAdapter()``.

Starts hypercorn (in a subprocess, on a free port) over TLS offering ALPN
``h2`` and ``http/1.1``, with a certificate from a throw-away CA made here
(with the ``cryptography`` package). Its answers say which client port (TCP
connection) and HTTP version each request came in on, after a 20 ms pause, so
that the threads' requests overlap. Then the same plain ``requests`` code (N
threads sharing one ``requests.Session``) runs twice:

* before: requests' own adapter (urllib3), HTTP/1.1, one connection per thread;
* after: the same code, with one line added,
  ``session.mount("https://", httpcore.RequestsAdapter())``: one HTTP/2
  connection for all the threads.

Needs ``requests`` (``pip install -e '.[requests]'``) and ``cryptography``::

    python examples/requests_session.py            # 8 threads x 25 requests
    python examples/requests_session.py --quick    # 8 threads x 5 requests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpcore

THREADS = 8  # below urllib3's default pool size (10), so it keeps one connection per thread


# --------------------------------------------------------------------------
# The server: hypercorn over TLS in a subprocess (this file, run with --serve).


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: after 20 ms, JSON with the client port (which connection) and HTTP version."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.02)
    body = b'{"port": %d, "http": "%s"}' % (scope["client"][1], scope["http_version"].encode())
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(fd: int, certfile: str, keyfile: str) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{fd}"]  # the socket the parent bound: no port race, no polling
    config.certfile, config.keyfile = certfile, keyfile
    config.alpn_protocols = ["h2", "http/1.1"]
    config.keep_alive_max_requests = 1_000_000_000  # hypercorn's default (1000) sends GOAWAY
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(hypercorn_serve(app, config))  # type: ignore[arg-type]


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate it signs for 127.0.0.1 and localhost:
    ``(ca.pem, cert.pem, key.pem)`` in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "httpcore example CA")])
    usage = dict.fromkeys(
        ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement"], False
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@contextlib.contextmanager
def hypercorn_tls(certfile: Path, keyfile: Path) -> Iterator[str]:
    """hypercorn on a listening socket bound here: connections queue until it accepts."""
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as sock:
        port = sock.getsockname()[1]
        fd = sock.fileno()
        argv = [sys.executable, __file__, "--serve", str(fd), str(certfile), str(keyfile)]
        proc = subprocess.Popen(argv, pass_fds=[fd])
    try:
        yield f"https://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(10)


# --------------------------------------------------------------------------
# Plain requests code: the same in both runs.


def fetch_all(session: Any, url: str, ca: Path, per_thread: int) -> tuple[int, set[int], set[str]]:
    """THREADS threads share ``session``; returns (OK responses, client ports, versions)."""
    ports: set[int] = set()
    versions: set[str] = set()
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def worker(_: int) -> int:
        barrier.wait()  # all threads start together
        ok = 0
        for _ in range(per_thread):
            response = session.get(url, verify=str(ca), timeout=10)
            response.raise_for_status()
            answer = response.json()
            with lock:
                ports.add(answer["port"])
                versions.add(answer["http"])
            ok += 1
        return ok

    with ThreadPoolExecutor(THREADS) as pool:
        ok = sum(pool.map(worker, range(THREADS)))
    return ok, ports, versions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 requests per thread")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        fd, certfile, keyfile = args.serve
        serve(int(fd), certfile, keyfile)
        return 0
    per_thread = 5 if args.quick else 25
    try:
        import requests
    except ImportError:
        print("this example needs requests: pip install -e '.[requests]'", file=sys.stderr)
        return 2
    if not hasattr(httpcore, "RequestsAdapter"):
        print("this httpcore has no RequestsAdapter yet", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        ca, certfile, keyfile = make_certificates(Path(tmp))
        with hypercorn_tls(certfile, keyfile) as url:
            print(f"server: hypercorn over TLS (ALPN h2, http/1.1) on {url}")
            # hypercorn may still be starting: wait for its first answer
            with httpcore.Client(ssl=ssl.create_default_context(cafile=ca)) as client:
                client.request("GET", url, timeout=30)

            total = THREADS * per_thread
            print(f"{THREADS} threads x {per_thread} requests through one requests.Session:")
            results = {}
            for label, mount in [
                ("before (requests' HTTPAdapter, urllib3)", False),
                ('after  (session.mount("https://", httpcore.RequestsAdapter()))', True),
            ]:
                with requests.Session() as session:
                    if mount:
                        session.mount("https://", httpcore.RequestsAdapter())  # the one change
                    start = time.perf_counter()
                    ok, ports, versions = fetch_all(session, url, ca, per_thread)
                    elapsed = time.perf_counter() - start
                results[mount] = ok, ports, versions
                shown = ", ".join(f"HTTP/{v}" for v in sorted(versions))
                print(
                    f"  {label}: {ok}/{total} OK in {elapsed:.2f} s; the server saw "
                    f"{shown} on {len(ports)} TCP connection(s)"
                )
    before, after = results[False], results[True]
    success = (
        before[0] == after[0] == total
        and before[2] == {"1.1"}
        and after[2] == {"2"}
        and len(after[1]) == 1
    )
    print("OK" if success else "FAILED")
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main())
