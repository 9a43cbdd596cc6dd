"""The read-only HTTP server: ``/metrics``, ``/`` (the page) and ``/healthz``.

Only GET and HEAD are answered; nothing reachable over HTTP acts on a
process. Each request to ``/metrics`` or ``/`` reads the table once.

A client costs a thread and a descriptor, so idle or slow ones must not keep
them: at most ``MAX_CLIENTS`` are served at once (more are closed at once),
and a connection still open ``CLIENT_DEADLINE`` seconds after it was
accepted is shut down, however slowly it trickles its request in. The bound
sits below the descriptors the held stat files leave free, so half-open
clients can neither wedge the server nor make a scan miss processes.
"""

from __future__ import annotations

import gzip
import signal
import socket
import sys
import threading
import time
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
MAX_CLIENTS = 64  # well under the 256 descriptors HeldStatFiles leaves free
CLIENT_DEADLINE = 10.0  # seconds from accept to the last byte sent (a scrape takes < 1 s)


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip;q=0`` refuses it)."""
    for part in header.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            weight = params.strip().lower().removeprefix("q=")
            try:
                return not params.strip() or float(weight) > 0
            except ValueError:
                return False
    return False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "undertaker-exporter"

    def setup(self) -> None:
        """Bound every socket wait; the server's sweep bounds the whole connection."""
        super().setup()
        self.connection.settimeout(self.server.client_deadline)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base's name)
        """Stay quiet: a scrape every few seconds is not news."""

    def _send(self, status: int, ctype: str, body: bytes, *, head: bool = False) -> None:
        if len(body) > 1024 and accepts_gzip(self.headers.get("Accept-Encoding", "")):
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
    request_queue_size = 64  # a burst of scrapers waits in the backlog, not refused

    def __init__(
        self,
        address: tuple[str, int],
        collector: ZombieCollector,
        *,
        max_clients: int = MAX_CLIENTS,
        client_deadline: float = CLIENT_DEADLINE,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.collector = collector
        self.registry = make_registry(collector)
        self.max_clients = max_clients
        self.client_deadline = client_deadline
        self._clients: dict[socket.socket, float] = {}  # open connection -> accepted at
        self._clients_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a thread, unless MAX_CLIENTS are being served: then hang up at once."""
        with self._clients_lock:
            full = len(self._clients) >= self.max_clients
            if not full:
                self._clients[request] = time.monotonic()
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Close a connection and forget it."""
        with self._clients_lock:
            self._clients.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Between polls: cut connections open past the deadline (a trickling slowloris)."""
        cutoff = time.monotonic() - self.client_deadline
        with self._clients_lock:
            late = [sock for sock, since in self._clients.items() if since < cutoff]
        for sock in late:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # its thread's read or write fails; it closes
            except OSError:
                pass  # closed meanwhile

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002
        """A client that hangs up or stalls is routine; anything else is one line, no traceback."""
        err = sys.exc_info()[1]
        if isinstance(err, OSError):
            return
        print(f"undertaker exporter: error serving {client_address[0]}: {err!r}", file=sys.stderr)


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
        server.serve_forever(poll_interval=0.5)  # also the period of the deadline sweep
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
