"""The read-only HTTP server: ``/metrics``, ``/`` (the page) and ``/healthz``.

Only GET and HEAD are answered; nothing reachable over HTTP acts on a
process. Each request to ``/metrics`` or ``/`` reads the table once.
"""

from __future__ import annotations

import gzip
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import generate_latest

from undertaker._errors import UndertakerError
from undertaker.exporter._collector import make_registry
from undertaker.exporter._page import render_page

if TYPE_CHECKING:
    from undertaker.exporter._collector import ZombieCollector


# The classic text format generate_latest() writes, named as Prometheus 2 expects it
# (newer clients call it version=1.0.0, which older servers do not know).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "undertaker-exporter"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base's name)
        """Stay quiet: a scrape every few seconds is not news."""

    def _send(self, status: int, ctype: str, body: bytes, *, head: bool = False) -> None:
        if len(body) > 1024 and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, 5)
            self.send_response(status)
            self.send_header("Content-Encoding", "gzip")
        else:
            self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self, *, head: bool = False) -> None:
        """Serve the three read-only paths."""
        path = self.path.partition("?")[0]
        collector = self.server.collector
        if path == "/metrics":
            body = generate_latest(self.server.registry)
            self._send(200, CONTENT_TYPE, body, head=head)
        elif path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n", head=head)
        elif path == "/":
            try:
                page = render_page(*collector.read_with_census(), collector.source.name)
            except UndertakerError as err:
                self._send(503, "text/plain; charset=utf-8", f"{err}\n".encode(), head=head)
                return
            self._send(200, "text/html; charset=utf-8", page.encode(), head=head)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n", head=head)

    def do_HEAD(self) -> None:
        """As GET, without the body."""
        self.do_GET(head=True)

    def _refuse(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    # Read-only: nothing acts over HTTP.
    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815  (the base's names)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], collector: ZombieCollector) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.collector = collector
        self.registry = make_registry(collector)
        super().__init__(address, _Handler)


def serve(collector: ZombieCollector, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; say where on standard error once listening.

    Raises:
        OSError: the address cannot be bound (in use, not ours, no permission).
    """
    server = _Server((host, port), collector)
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:  # from the announcement on: a signal right after it still exits 0
        print(
            f"undertaker exporter: listening on http://{shown}:{bound}/metrics",
            file=sys.stderr,
            flush=True,
        )
        server.serve_forever(poll_interval=0.5)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
