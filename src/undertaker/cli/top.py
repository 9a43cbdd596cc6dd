"""``undertaker top``: a live view of zombies by parent, refreshed in place.

The table behind it follows the kernel's process events when it can
(:class:`~undertaker.proc.EventTable`: root in the initial PID namespace), so
a zombie that dies while ``top`` runs shows its exact age; elsewhere every
frame is a full scan, and the header says so.

Only the standard library drives the terminal: ``termios`` puts it in cbreak
mode (keys arrive one by one, unechoed; Ctrl-C still sends SIGINT) and
escape sequences switch to the alternate screen. Every way out (``q``,
Ctrl-C, SIGTERM, SIGHUP, an error) restores the saved modes and the screen,
and unsubscribes from the events.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import termios
import time
import tty
from contextlib import contextmanager
from typing import TYPE_CHECKING

from undertaker._errors import UndertakerError
from undertaker.census import take_census
from undertaker.cli._common import EXIT_OK, add_color_option, add_proc_option, seconds_between
from undertaker.cli._coverage import assess
from undertaker.cli._style import Style, duration, use_color
from undertaker.cli._top_view import baseline, render_frame
from undertaker.proc import EventTable, scan
from undertaker.proc._table import DEFAULT_RESYNC

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from types import FrameType

_ENTER = "\033[?1049h\033[?25l"  # alternate screen, cursor hidden
_LEAVE = "\033[?25h\033[?1049l"
_HOME = "\033[H\033[2J"  # cursor home, clear the screen


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``top`` and its options."""
    top = subs.add_parser(
        "top",
        help="live view: zombies by parent, growth, states, PID pressure",
        description="A live, top-like view refreshed in place: the Tasks line with PID "
        "pressure, zombies and their growth since start, the parents responsible (the "
        "worst highlighted). As root in the initial PID namespace the table follows the "
        "kernel's process events, so zombies that die while it runs have exact ages; "
        "elsewhere each refresh is a full scan. Keys: q quits (or Ctrl-C).",
        epilog="Exit status: 0 after q, Ctrl-C, SIGTERM or --iterations; 2 error (standard "
        "output not a terminal without --iterations). Environment variables: "
        "UNDERTAKER_PROC (procfs root), NO_COLOR (disable colour).",
    )
    top.add_argument(
        "--interval",
        "-d",
        type=seconds_between(0.05, 3600),
        default=2.0,
        metavar="SECONDS",
        help="seconds between refreshes (default 2)",
    )
    top.add_argument(
        "--iterations",
        "-n",
        type=int,
        metavar="N",
        help="stop after N frames; without a terminal, print them one after another",
    )
    top.add_argument(
        "--no-events",
        action="store_true",
        help="scan /proc every frame instead of following the kernel's process events",
    )
    top.add_argument(
        "--resync",
        type=seconds_between(1, 86400),
        default=DEFAULT_RESYNC,
        metavar="SECONDS",
        help="with events, reconcile with a full scan this often (default %(default)g)",
    )
    add_proc_option(top)
    add_color_option(top)


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(EXIT_OK)  # unwinds through the finally blocks that restore


@contextmanager
def _screen(fd: int, interactive: bool) -> Iterator[None]:
    """Cbreak mode and the alternate screen, restored however the block ends."""
    if not interactive:
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        sys.stdout.write(_ENTER)
        sys.stdout.flush()
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write(_LEAVE)
        sys.stdout.flush()


def _wait_for_key(fd: int | None, seconds: float) -> str:
    """Wait up to *seconds* for a key on *fd*; return it ("" on timeout or no terminal)."""
    if fd is None:
        time.sleep(seconds)
        return ""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        key = os.read(fd, 32).decode("utf-8", "replace")
        if not key:
            return "q"  # the terminal went away
        if "q" in key.lower():
            return "q"


def run(args: argparse.Namespace) -> int:
    """Refresh until q, Ctrl-C, a signal, or --iterations frames."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not interactive and args.iterations is None:
        raise UndertakerError("top needs a terminal; for batch output give --iterations N")
    if args.iterations is not None and args.iterations < 1:
        raise UndertakerError(f"--iterations takes a positive count, not {args.iterations}")
    style = Style(use_color(args.color))
    # Installed before subscribing: a SIGTERM's default action would end us
    # subscribed, and the kernel would go on generating events until reboot.
    old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    table = None
    try:
        if not args.no_events:
            table = EventTable(args.proc, resync=args.resync)
        return _loop(args, table, style, interactive)
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how a top is left
    finally:
        if table is not None:
            table.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _loop(
    args: argparse.Namespace, table: EventTable | None, style: Style, interactive: bool
) -> int:
    if table is None:
        source = "source: /proc scan each frame (--no-events); ages marked ~ are estimates"
    elif table.fallback is not None:
        source = f"source: /proc scan each frame ({table.fallback})"
    else:
        source = "source: kernel events (exact ages for zombies dying from now on)"
    fd = sys.stdin.fileno() if interactive else None
    frames = 0
    base = None
    with _screen(fd if fd is not None else -1, interactive):
        while True:
            snap = table.snapshot() if table is not None else scan(args.proc, owners=False)
            census = take_census(snap)
            now = time.time()
            if base is None:
                base = baseline(census, now)
            size = shutil.get_terminal_size((100, 40)) if interactive else (200, 1000)
            frame = render_frame(
                census,
                assess(snap),
                base,
                style,
                size=(size[0], size[1]),
                interval=args.interval,
                source=source
                if snap.source == "scan"
                else f"{source}; full scan {duration(snap.table_age)} ago",
                now=now,
            )
            text = "\n".join(frame)
            sys.stdout.write(_HOME + text if interactive else text + "\n\n")
            sys.stdout.flush()
            frames += 1
            if args.iterations is not None and frames >= args.iterations:
                return EXIT_OK
            if _wait_for_key(fd, args.interval) == "q":
                return EXIT_OK
