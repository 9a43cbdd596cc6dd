"""``undertaker why``: why each zombie's parent does not reap, and what fixes it."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from undertaker._errors import NoSuchProcess
from undertaker.cli._common import EXIT_FOUND, add_color_option, add_proc_option, pid_arg
from undertaker.cli._coverage import assess, exit_status, not_seen
from undertaker.cli._style import Style, use_color
from undertaker.cli._why_json import explanation_json
from undertaker.cli._why_view import render_explanation
from undertaker.diagnose import explain, watch
from undertaker.proc import scan

if TYPE_CHECKING:
    import argparse

_HELP = (
    "Exit status: 0 no zombies, 1 zombies (or zombie leaders) explained, 2 bad input "
    "(not a number, no such process, not a zombie and no children) or error, 3 no "
    "zombies seen but the view is incomplete (hidepid, other users' processes), 141 "
    "output pipe closed early. "
    "An age marked ~ is an estimate (see undertaker ps --help). JSON schema: docs/json.md."
)


def _seconds(text: str) -> float:
    import argparse  # noqa: PLC0415  (only for the error type)

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"--watch takes 0 < SECONDS <= 3600, not {text!r}")
    return value


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``why`` and its options."""
    why = subs.add_parser(
        "why",
        help="explain why each zombie's parent does not reap it, and how to fix it",
        description="For each parent responsible for a zombie, show the kernel's evidence "
        "(SIGCHLD disposition and signal masks, state, tracer, wchan and syscall, PID "
        "namespace, container, whether it ever reaped), a verdict and the fixes ranked "
        "from least to most disruptive. A PID may be a zombie, a zombie leader or a parent; "
        "none means every zombie.",
        epilog=_HELP,
    )
    why.add_argument("pids", nargs="*", type=pid_arg, metavar="PID", help="what to explain")
    why.add_argument("--json", action="store_true", help="print one JSON document (docs/json.md)")
    why.add_argument(
        "--watch",
        type=_seconds,
        metavar="SECONDS",
        help="sample each parent's zombie count again after SECONDS: is it growing?",
    )
    add_proc_option(why)
    add_color_option(why)


def run(args: argparse.Namespace) -> int:
    """Scan, explain, print; exit 1 when something was explained."""
    snapshot = scan(args.proc, owners=False, split=True, zombie_reads=not args.pids)
    coverage = assess(snapshot)
    try:
        found = explain(snapshot, args.pids)
    except NoSuchProcess as err:
        if coverage.hidden is None:
            raise
        # Under hidepid a PID we cannot see may well exist: never claim it does not.
        raise not_seen(err.pid, coverage.hidden) from None
    if args.watch is not None and found.parents:
        found = watch(found, args.watch, args.proc)
    status = EXIT_FOUND if found.leaders else exit_status(len(found.parents), coverage)
    if args.json:
        indent = 1 if sys.stdout.isatty() else None
        doc = explanation_json(found) | {
            "hidepid": snapshot.hidepid,
            "incomplete": coverage.incomplete,
        }
        sys.stdout.write(json.dumps(doc, indent=indent) + "\n")
        return status
    style = Style(use_color(args.color))
    print(render_explanation(found, style, time.time(), incomplete=coverage.incomplete))
    for note in coverage.notes(pid_count=False):
        print(style.dim("note: " + note))
    return status
