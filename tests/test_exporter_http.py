"""The exporter's HTTP server against hostile and careless clients, over real sockets.

A slowloris or a flood of idle connections must not wedge the server, starve
other scrapes or ``/healthz``, or hold a thread and a descriptor each
(scrapers that hang up mid-answer: test_exporter.py's SIGTERM test).
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from exporter_helpers import serving
from undertaker.exporter import ScanSource, ZombieCollector
from undertaker.exporter._server import _Server, accepts_gzip


@pytest.fixture
def server() -> Iterator[_Server]:
    """An exporter server on loopback reading the real /proc: 4 clients at most, 1 s each."""
    srv = _Server(
        ("127.0.0.1", 0), ZombieCollector(ScanSource("/proc")), max_clients=4, client_deadline=1.0
    )
    with serving(srv):
        yield srv


def _get(srv: _Server, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    url = f"http://127.0.0.1:{srv.server_address[1]}{path}"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  (loopback)
        return response.status, dict(response.headers), response.read()


def _half_open(srv: _Server, count: int) -> list[socket.socket]:
    """*count* clients that send part of a request and then say nothing."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)
    return socks


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_trickling_slowloris_is_cut_at_the_deadline(server: _Server) -> None:
    """One byte every 0.3 s never trips a read timeout; the deadline from accept still cuts it."""
    sock = _half_open(server, 1)[0]
    try:
        start = time.monotonic()
        cut = False
        while time.monotonic() - start < 4 and not cut:
            try:
                sock.sendall(b"X")
            except OSError:
                cut = True
                break
            # Other scrapes are served meanwhile.
            assert _get(server, "/healthz")[2] == b"ok\n"
            time.sleep(0.3)
            cut = _closed_by_server(sock, 0.01)
        assert cut, "the trickling client was still connected after 4 s (deadline 1 s)"
        assert time.monotonic() - start < 3
    finally:
        sock.close()


def test_idle_clients_are_bounded_and_dropped(server: _Server) -> None:
    """Clients past the bound are hung up on at once; held ones go at the deadline."""
    pid = os.getpid()
    threads_before = len(os.listdir(f"/proc/{pid}/task"))
    held = _half_open(server, 4)
    extra = _half_open(server, 20)
    try:
        assert all(_closed_by_server(sock, 2) for sock in extra)  # refused, not queued forever
        # Not a thread per idle client: at most the bound.
        assert len(os.listdir(f"/proc/{pid}/task")) <= threads_before + 4
        assert all(_closed_by_server(sock, 3) for sock in held)  # the deadline is 1 s
        assert _get(server, "/healthz")[2] == b"ok\n"
        status, _, body = _get(server, "/metrics")
        assert status == 200
        assert b"\nundertaker_zombies " in body
    finally:
        for sock in held + extra:
            sock.close()


def test_gzip_only_when_the_client_accepts_it(server: _Server) -> None:
    """``gzip;q=0`` refuses gzip (RFC 9110); plain ``gzip`` or a positive weight gets it."""
    assert (
        _get(server, "/metrics", **{"Accept-Encoding": "gzip;q=0"})[1].get("Content-Encoding")
        is None
    )
    got = _get(server, "/metrics", **{"Accept-Encoding": "br, gzip;q=0.5"})
    assert got[1].get("Content-Encoding") == "gzip"
    assert [accepts_gzip(h) for h in ("", "identity", "GZIP", "*", "gzip; q=0.0", "gzip;q=x")] == [
        False, False, True, True, False, False,
    ]  # fmt: skip
