"""Article 003's forking echo server, with its reap() before each fork and without it."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from undertaker.lab._core import (
    CONFIRMED,
    DEPENDS,
    REFUTED,
    Lab,
    Pipe,
    Verdict,
    decide,
    experiment,
    set_comm,
)

CLIENTS = 4  # connections that come and go together before the last one


def _reap() -> None:
    """The article's reap(): collect finished children until none is left."""
    while True:
        try:
            result = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not result[0]:
            break


def _handle(client: socket.socket) -> None:
    set_comm("echo-handler")
    while True:
        data = client.recv(4096)
        if not data:
            break
        client.sendall(data)
    client.close()
    os._exit(0)


def _server(report: Pipe, reaps: bool) -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))  # the article's port 51423, chosen by the kernel here
    listener.listen(8)
    report.send({"port": listener.getsockname()[1]})
    while True:
        client, _ = listener.accept()
        if reaps:
            _reap()
        if os.fork() == 0:
            listener.close()
            _handle(client)
        client.close()


def _echo(port: int) -> socket.socket:
    """Connect, check the echo, and keep the connection open."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    conn.sendall(b"hello")
    assert conn.recv(16) == b"hello"  # noqa: S101  (an echo server that does not echo is a bug)
    return conn


def _zombies_of(lab: Lab, server: int) -> list[int]:
    return [r["pid"] for r in lab.children_rows(server) if r["state"] == "Z"]


def _settle(lab: Lab, server: int, count: int) -> list[int]:
    """Wait until *server* has *count* zombies (or 1 s), and return them."""
    lab.until(lambda: len(_zombies_of(lab, server)) == count, 1.0)
    return _zombies_of(lab, server)


def _serve(lab: Lab, reaps: bool) -> dict[str, Any]:
    report = Pipe()
    server = lab.fork(_server, report, reaps, name="echo-server")
    try:
        port = report.recv()["port"]
        conns = [_echo(port) for _ in range(CLIENTS)]
        for conn in conns:
            conn.close()
        idle = _settle(lab, server, CLIENTS)
        lab.ps(f"{CLIENTS} clients came and went; the server waits in accept()", [server, *idle])
        last = _echo(port)
        during = _settle(lab, server, 0 if reaps else CLIENTS)
        last.close()
        after = _settle(lab, server, 1 if reaps else CLIENTS + 1)
        lab.ps("one more client came and went", [server, *after])
    finally:
        os.kill(server, signal.SIGKILL)  # our child, unreaped: its PID is still its own
        lab.collect([server])
        time.sleep(0.01)
        lab.reap_any(timeout=0.5)  # the handlers' zombies, now orphans of ours
    kind = "with reap() before each fork" if reaps else "without reap()"
    lab.say(
        f"{kind}: {len(idle)} zombies while it waited for connection {CLIENTS + 1}, "
        f"{len(during)} once it had accepted it, {len(after)} after it closed"
    )
    return {"idle": len(idle), "during_next": len(during), "after_next": len(after)}


@experiment(
    "echo-server-reap",
    "003",
    "the forking echo server's reap() before each fork leaves no zombies behind",
)
def echo_server_reap(lab: Lab) -> Verdict:
    """Connections come and go; count the server's zombies between them."""
    seen = _serve(lab, reaps=True)
    lab.record(**seen, clients=CLIENTS)
    if seen["during_next"] != 0:
        return Verdict(REFUTED, f"{seen['during_next']} zombies stayed even after reap() ran")
    return decide(
        seen["idle"] > 0,
        Verdict(
            DEPENDS,
            f"reap() runs only when a connection arrives: {seen['idle']} "
            "zombies waited with the server in accept() until the next client came",
        ),
        Verdict(CONFIRMED, "no zombie was left at any point"),
    )


@experiment(
    "echo-server-no-reap",
    "003",
    "a forking server that never waits leaves a zombie for every finished connection",
)
def echo_server_no_reap(lab: Lab) -> Verdict:
    """The same server without reap()."""
    seen = _serve(lab, reaps=False)
    lab.record(**seen, clients=CLIENTS)
    return decide(
        seen["after_next"] == CLIENTS + 1,
        Verdict(
            CONFIRMED,
            f"each of the {CLIENTS + 1} finished connections left a zombie "
            "handler until the server itself died",
        ),
        Verdict(REFUTED, f"{seen['after_next']} zombies after {CLIENTS + 1} connections"),
    )


EXPERIMENTS = (echo_server_reap, echo_server_no_reap)
