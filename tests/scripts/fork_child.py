"""Fork with live connections: ``python -m tests.scripts.fork_child RAW_URL ECHO_URL BYTES_URL``.

Run in its own interpreter so the test runner is never forked. Before the
fork the parent holds: a default-engine ``Client`` with an idle connection to
the raw server and one to hypercorn, a half-read streamed response, and a
``Client`` on an explicit ``Engine``. The child uses the pre-fork client, a
fresh client and the async default pool, and reports over a pipe. Then the
parent uses its connections again. Prints one JSON line:
``{"child": {...}, "parent": {...}}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import traceback
from typing import Any

import httpcore
from httpcore.engine import runner

raw_url, echo_url, bytes_url = sys.argv[1:4]
BIG = int(bytes_url.rsplit("/", 1)[1])


def engine_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("httpcore-engine"))


client = httpcore.Client(timeout=10)
explicit = httpcore.Engine()
explicit_client = httpcore.Client(engine=explicit, timeout=10)

parent: dict[str, Any] = {"pid": os.getpid()}
assert client.request("GET", raw_url + "parent-1").body == b"ok"
assert explicit_client.request("GET", raw_url + "explicit-1").body == b"ok"
parent["echo_port_before"] = json.loads(client.request("GET", echo_url).body)["client_port"]
held = client.request("GET", bytes_url, stream=True)
held_iter = held.stream()
held_got = len(next(held_iter))
parent_engine = runner._default
assert parent_engine is not None

rfd, wfd = os.pipe()
sys.stdout.flush()
sys.stderr.flush()
pid = os.fork()

if pid == 0:  # -- the child ------------------------------------------------------------
    os.close(rfd)
    child: dict[str, Any] = {"pid": os.getpid()}
    try:
        child["default_before_use"] = repr(runner._default)
        child["threads_before_use"] = engine_threads()
        child["raw_1"] = client.request("GET", raw_url + "child-1").body.decode()
        child["raw_2"] = client.request("GET", raw_url + "child-2").body.decode()
        child["echo_port"] = json.loads(client.request("GET", echo_url).body)["client_port"]
        with httpcore.Client(timeout=10) as fresh:
            child["fresh"] = fresh.request("GET", raw_url + "child-fresh").body.decode()

        async def use_async() -> str:
            return (await httpcore.request("GET", raw_url + "child-async")).body.decode()

        child["async"] = asyncio.run(use_async())
        try:
            explicit_client.request("GET", raw_url + "child-explicit")
            child["explicit"] = "no error"
        except httpcore.HTTPCoreError as exc:
            child["explicit"] = type(exc).__name__
        engine = runner._default
        child["new_engine"] = engine is not None and engine is not parent_engine
        child["engine_alive"] = engine is not None and engine.alive
        child["threads_after_use"] = engine_threads()
    except BaseException:
        child["error"] = traceback.format_exc()
    os.write(wfd, json.dumps(child).encode())
    os.close(wfd)
    sys.exit(0)  # a normal exit: the child's atexit hooks run (and must spare the parent's sockets)

# -- the parent -------------------------------------------------------------------------
os.close(wfd)
chunks = []
while True:
    data = os.read(rfd, 65536)
    if not data:
        break
    chunks.append(data)
os.close(rfd)
_, status = os.waitpid(pid, 0)
child_report = json.loads(b"".join(chunks) or b"{}")
child_report["exit_code"] = os.waitstatus_to_exitcode(status)

held_rest = sum(len(part) for part in held_iter)
parent["held_total"] = held_got + held_rest
parent["big"] = BIG
parent["raw_2"] = client.request("GET", raw_url + "parent-2").body.decode()
parent["explicit_2"] = explicit_client.request("GET", raw_url + "explicit-2").body.decode()
parent["echo_port_after"] = json.loads(client.request("GET", echo_url).body)["client_port"]
parent["same_engine"] = runner._default is parent_engine
parent["threads"] = engine_threads()
print(json.dumps({"child": child_report, "parent": parent}), flush=True)
