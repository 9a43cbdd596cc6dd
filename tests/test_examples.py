"""The examples run and keep their promises: no zombies left, with negative controls."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, needs_namespace, run_in_namespace
from undertaker.testing import proc_state, sleep_until

ECHO_SERVER = REPO / "examples" / "echo_server.py"
WORKER_POOL = REPO / "examples" / "worker_pool.py"

# Runs as PID 1 of a private namespace: start the server, make N loopback
# connections from 4 threads, check every echo, count the server's zombie
# children while it is still alive, then let it exit.
DRIVER = r"""
import json, socket, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from undertaker.testing import proc_state, sleep_until
script, n, settle, extra = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
server = subprocess.Popen([sys.executable, script, "--connections", str(n), *extra],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
port = int(server.stdout.readline())
def client(i):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        message = f"hello {i}\n".encode()
        conn.sendall(message)
        conn.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := conn.recv(4096):
            echoed += chunk
        return echoed == message
started = time.monotonic()
with ThreadPoolExecutor(4) as pool:
    ok = sum(pool.map(client, range(n)))
served = server.stdout.readline().strip()
def zombies():
    with open(f"/proc/{server.pid}/task/{server.pid}/children") as listing:
        return sum(proc_state(int(pid)) == "Z" for pid in listing.read().split())
sleep_until(lambda: zombies() == 0, settle)
left = zombies()
server.stdin.close()
server.wait(30)
print(json.dumps({"ok": ok, "served": served, "zombies": left,
                  "seconds": round(time.monotonic() - started, 2)}))
"""


def _echo(connections: int, settle: float, *extra: str) -> dict:  # type: ignore[type-arg]
    done = run_in_namespace(DRIVER, str(ECHO_SERVER), str(connections), str(settle), *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@needs_namespace
@pytest.mark.namespace
def test_echo_server_1000_connections_no_zombies() -> None:
    """The forking server answers 1,000 loopback clients and leaves 0 zombies."""
    result = _echo(1000, 10)
    print(result)
    assert result["ok"] == 1000
    assert result["served"] == "served 1000"
    assert result["zombies"] == 0


@needs_namespace
@pytest.mark.namespace
def test_echo_server_without_reaping_leaves_zombies() -> None:
    """Negative control: the same server that never waits keeps one zombie per connection."""
    result = _echo(1000, 0.5, "--no-reap")
    print(result)
    assert result["ok"] == 1000
    assert result["zombies"] == 1000


def _children() -> set[int]:
    with open(f"/proc/self/task/{os.getpid()}/children") as listing:
        return {int(p) for p in listing.read().split()}


def test_worker_pool_leaves_no_zombies() -> None:
    """The pool example joins its workers and reaps the orphans its tasks leave."""
    before = _children()
    done = subprocess.run(
        [sys.executable, str(WORKER_POOL), "--workers", "3", "--tasks", "30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "results_ok": True,
        "worker_exit_codes": [0, 0, 0],
        "orphans_reaped": 6,
        "orphans_expected": 6,
        "zombies_left": 0,
    }
    # multiprocessing's resource tracker (spawn start method) outlives the pool
    # process by a moment, and is then adopted by us (the subreaper): reap it.
    assert sleep_until(lambda: all(proc_state(p) == "Z" for p in _children() - before), 10)
    for pid in _children() - before:
        os.waitpid(pid, 0)
