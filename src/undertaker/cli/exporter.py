"""``undertaker exporter``: serve zombie metrics to Prometheus (read-only).

Needs the ``undertaker[exporter]`` extra (``prometheus_client``), imported
only here, when the command runs: ``ps`` and ``run`` never load it.
``--once`` prints one scrape and exits, for node_exporter's textfile
collector or a look by hand.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from typing import TYPE_CHECKING

from undertaker.cli._common import EXIT_ERROR, EXIT_OK, add_proc_option, seconds_between
from undertaker.cli._exit import EXIT_MISSING_EXTRA

if TYPE_CHECKING:
    from undertaker.exporter import ZombieCollector

DEFAULT_PORT = 9866
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_RESYNC = 60.0  # as EventTable's; not imported, to keep --help light


def listen_arg(text: str) -> tuple[str, int]:
    """Parse ``ADDR:PORT`` (``[ADDR]:PORT`` for IPv6; ``:PORT`` means every address)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"not ADDR:PORT: {text!r} (e.g. {DEFAULT_LISTEN})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"not ADDR:PORT: {text!r} (write IPv6 as [ADDR]:PORT)")
    return host or "0.0.0.0", int(port)  # noqa: S104  (asked for explicitly with :PORT)


def top_arg(text: str) -> int:
    """Parse the label bound: a positive integer."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``exporter``."""
    sub = subs.add_parser(
        "exporter",
        help="serve zombie metrics to Prometheus (read-only HTTP: /metrics, /, /healthz)",
        description="Serve Prometheus metrics about zombies: counts by parent and "
        "container, zombie leaders, processes by state, PID and thread pressure, the "
        "oldest zombie's age. One scan of /proc per scrape, or with --events a table "
        "kept current from the kernel's process events (exact ages). Read-only: no action is "
        "reachable over HTTP. Needs the undertaker[exporter] extra (prometheus_client).",
        epilog=f"Default address {DEFAULT_LISTEN} (loopback). Metrics: docs/exporter.md. "
        "Exit status: 0 stopped by SIGTERM/SIGINT or --once done, 2 error (bad input, "
        f"address unusable, unreadable /proc), {EXIT_MISSING_EXTRA} prometheus_client "
        "not installed.",
    )
    sub.add_argument(
        "--listen",
        type=listen_arg,
        default=listen_arg(DEFAULT_LISTEN),
        metavar="ADDR:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; port 0 picks a free one)",
    )
    sub.add_argument(
        "--top",
        type=top_arg,
        default=10,
        metavar="N",
        help="label at most N parents and N containers, the rest as 'other' (default 10)",
    )
    sub.add_argument("--once", action="store_true", help="print one scrape and exit")
    sub.add_argument(
        "--events",
        action="store_true",
        help="keep the table current from the kernel's process events instead of a scan "
        "per scrape: cheaper scrapes, exact ages for zombies that die while it runs "
        "(root in the initial PID namespace; elsewhere it says so and scans)",
    )
    sub.add_argument(
        "--resync",
        type=seconds_between(1, 86400),
        default=DEFAULT_RESYNC,
        metavar="SECONDS",
        help="with --events, reconcile with a full scan this often (default %(default)g)",
    )
    add_proc_option(sub)


def _raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard one (no privilege needed)."""
    import resource  # noqa: PLC0415

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(args: argparse.Namespace) -> int:
    """Serve until stopped, or print one scrape with ``--once``."""
    try:
        from undertaker.exporter import EventSource, ScanSource, ZombieCollector  # noqa: PLC0415
    except ImportError as err:
        print(
            f"undertaker exporter: error: {(err.name or 'prometheus_client').partition('.')[0]} "
            "is not installed: "
            "pip install 'undertaker[exporter]'",
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA
    if not args.once:
        _raise_open_file_limit()  # room to hold every process's stat file between scrapes
    source: EventSource | ScanSource
    if args.events:
        # Before subscribing: SIGTERM's or SIGHUP's default action would end us
        # subscribed, and the kernel would generate events until reboot.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _stop)
        source = EventSource(args.proc, resync=args.resync)
        if source.fallback is not None:  # said once; the metrics say source="scan"
            print(
                f"undertaker exporter: note: --events: {source.fallback}; scanning each scrape",
                file=sys.stderr,
            )
    else:
        source = ScanSource(args.proc, hold_files=not args.once)
    try:
        return _serve_or_print(args, ZombieCollector(source, top=args.top))
    finally:
        source.close()  # with --events: unsubscribe, on every way out


def _stop(_signum: int, _frame: object) -> None:
    raise SystemExit(EXIT_OK)  # unwinds through the close of the source


def _serve_or_print(args: argparse.Namespace, collector: ZombieCollector) -> int:
    from prometheus_client.exposition import generate_latest  # noqa: PLC0415

    from undertaker.exporter import make_registry, serve  # noqa: PLC0415

    if args.once:
        sys.stdout.write(generate_latest(make_registry(collector)).decode())
        if collector.last_error is not None:
            print(f"undertaker exporter: error: {collector.last_error}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    collector.read()  # fail now, with one line, if the table cannot be read at all
    host, port = args.listen
    try:
        serve(collector, host, port)
    except OSError as err:
        hint = ""
        if err.errno == errno.EACCES and port < 1024:
            hint = " (ports below 1024 need CAP_NET_BIND_SERVICE)"
        elif err.errno == errno.EADDRINUSE:
            hint = " (address in use: pick another --listen)"
        print(
            f"undertaker exporter: error: cannot listen on {host}:{port}: "
            f"{err.strerror or err}{hint}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_OK
