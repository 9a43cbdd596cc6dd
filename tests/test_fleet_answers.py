"""``undertaker fleet`` pointed at something that is not a healthy Prometheus.

A wrong URL (the exporter's own port, a proxy's error page, an SSH port) or
a broken answer must give one line and exit 2, never a traceback and never
exit 1, which means "zombies found" to whoever scripts around fleet. The
real Prometheus is exercised in test_prometheus.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from exporter_helpers import serving
from helpers import cli


class _Canned(BaseHTTPRequestHandler):
    answer = b""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""

    def do_GET(self) -> None:
        """Answer every query with the canned body."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)


@pytest.fixture
def canned() -> Iterator[HTTPServer]:
    """A loopback HTTP server that answers what ``_Canned.answer`` holds."""
    with serving(HTTPServer(("127.0.0.1", 0), _Canned)) as server:
        yield server


def _vector(*samples: dict[str, Any]) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": list(samples)}}
    ).encode()


@pytest.mark.parametrize(
    "answer",
    [
        b"[]",
        b'{"status": "success"}',
        b'{"status": "error"}',
        _vector({"metric": {"instance": "a"}}),
        _vector({"metric": {"instance": "a"}, "value": [1, "NaN"]}),
        _vector({"metric": {"instance": "a"}, "value": [1, "three"]}),
        b"<html>a proxy's error page</html>",
    ],
    ids=["list", "no-data", "error", "no-value", "nan", "not-a-number", "html"],
)
def test_broken_answers_are_one_line_exit_2(canned: HTTPServer, answer: bytes) -> None:
    """Each broken answer: one line naming the server, exit 2."""
    _Canned.answer = answer
    done = cli("fleet", "--prometheus", f"http://127.0.0.1:{canned.server_address[1]}")
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.startswith("undertaker fleet: error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_server_that_does_not_speak_http() -> None:
    """An SSH banner instead of HTTP: one line, exit 2."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def banner() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        thread = threading.Thread(target=banner)
        thread.start()
        done = cli("fleet", "--prometheus", f"http://127.0.0.1:{listener.getsockname()[1]}")
        thread.join(10)
    assert (done.returncode, done.stderr.count("\n")) == (2, 1), done.stderr
    assert "does not speak HTTP" in done.stderr


def test_an_unclosed_ipv6_bracket_is_a_bad_url() -> None:
    """``http://[::1`` is refused as a URL, not a traceback."""
    done = cli("fleet", "--prometheus", "http://[::1")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1), done.stderr
    assert "must be an http(s) URL" in done.stderr
