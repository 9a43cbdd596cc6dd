"""Exporters over real process tables: each in its own PID namespace, with its own zombies.

A namespace's PID 1 (the script below) makes the zombies asked for, starts
``undertaker exporter --listen 127.0.0.1:0`` reading that namespace's /proc,
reports the port and the PIDs, and waits for EOF on stdin. When it exits the
kernel kills everything left in the namespace, so nothing outlives a test,
even one that fails.
"""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from undertaker.testing import _Workload, sleep_until

_S = TypeVar("_S", bound=socketserver.BaseServer)

_NAMESPACE_SCRIPT = r"""
import json, os, subprocess, sys
from undertaker.testing import ZombieLeader, ZombieParent, ZombieSpec
spec = json.loads(sys.argv[1])
fixtures = []
try:
    for name, count in spec["parents"]:
        fixtures.append(ZombieParent([ZombieSpec(code=3)] * count, name=name).start())
    for _ in range(spec["leaders"]):
        fixtures.append(ZombieLeader().start())
    exporter = subprocess.Popen(
        [sys.executable, "-m", "undertaker", "exporter", "--listen", "127.0.0.1:0", *spec["args"]],
        stderr=subprocess.PIPE, text=True,
    )
    line = exporter.stderr.readline()
    port = int(line.rsplit(":", 1)[1].split("/")[0])
    parents = [f.pid for f in fixtures if isinstance(f, ZombieParent)]
    zombies = [z for f in fixtures if isinstance(f, ZombieParent) for z in f.zombies]
    print(json.dumps({"port": port, "parents": parents, "zombies": zombies}), flush=True)
    sys.stdin.read()
    exporter.terminate()
    exporter.wait(10)
finally:
    for fixture in fixtures:
        fixture.close()
"""


UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


class NamespaceExporter:
    """An exporter in a fresh PID namespace holding *parents* (name, zombies) and *leaders*."""

    def __init__(
        self, parents: list[tuple[str, int]], leaders: int = 0, args: tuple[str, ...] = ()
    ) -> None:
        spec = {"parents": parents, "leaders": leaders, "args": list(args)}
        # A workload fed through stdin: EOF ends it, SIGKILL to unshare (ours)
        # if it lingers, and --kill-child takes the namespace down with it.
        self._workload = _Workload(
            [*UNSHARE, sys.executable, "-c", _NAMESPACE_SCRIPT, json.dumps(spec)], timeout=30
        )
        report = json.loads(self._workload._readline())
        self.port: int = report["port"]
        self.zombies: list[int] = report["zombies"]
        self.parents: list[int] = report["parents"]
        self.address = f"127.0.0.1:{self.port}"

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        """GET *path*; return the status, headers and body."""
        request = urllib.request.Request(f"http://{self.address}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def metrics(self) -> dict[str, float]:
        """One scrape, as ``{'name{labels}': value}``."""
        status, _, body = self.get("/metrics")
        assert status == 200
        return parse_exposition(body.decode())

    def close(self) -> None:
        """EOF to the namespace's PID 1, which stops the exporter and its zombies' parents."""
        self._workload.close()

    def __enter__(self) -> NamespaceExporter:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_exposition(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` from Prometheus' text format (labels as written)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def free_port() -> int:
    """A port free on loopback right now (for servers that cannot be told port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    """Poll *url* until it answers 200."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    assert sleep_until(ready, timeout), f"{url} did not answer in {timeout} s"


def stop(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM our child *proc*, SIGKILL it if it lingers, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serving(server: _S) -> Iterator[_S]:
    """Run *server* in a thread of this process for the ``with`` block, then close it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
