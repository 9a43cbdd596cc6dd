"""``undertaker lab``: run the seed articles' experiments and judge their claims.

``lab list`` shows every experiment; ``lab run ID`` or ``lab run --all`` runs
them, each isolated (a private PID namespace as root, else under a child
subreaper), and prints the claim, the process-table lines that matter, what
was observed and a verdict: confirmed, refuted or depends.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Any

from undertaker.cli._common import EXIT_ERROR, EXIT_OK, add_color_option
from undertaker.cli._lab_view import render_list, render_result, render_summary, summary_counts
from undertaker.cli._style import Style, use_color
from undertaker.lab import (
    EXPERIMENTS,
    SEEDS,
    UnknownExperiment,
    can_use_namespace,
    find,
    run_isolated,
)
from undertaker.wait import signal_name

if TYPE_CHECKING:
    import argparse

LAB_JSON_VERSION = 1
EXIT_EXPERIMENT_FAILED = 1  # an experiment could not run to a verdict (not: a refuted claim)
EXIT_UNKNOWN_EXPERIMENT = 3  # no experiment has that id


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lab list`` and ``lab run``."""
    lab = subs.add_parser(
        "lab",
        help="run the seed articles' experiments on the real kernel and judge each claim",
        description="Each experiment reproduces one claim of the articles about zombies "
        "and orphans with real processes, isolated (a private PID namespace as root, "
        "else under a child subreaper), and reports what the kernel did: the claim, the "
        "process-table lines that matter, the observations, and a verdict (confirmed, "
        "refuted, depends) with one sentence why. Nothing is left behind.",
        epilog="Exit status: 0 every experiment ran (or was skipped for lack of a "
        "privilege), 1 an experiment failed to run, 2 bad usage, 3 unknown experiment id, "
        "128+N stopped by signal N (the running experiment is cleaned up first). "
        "A refuted claim is a result, not a failure. JSON schema: docs/json.md.",
    )
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=type(lab))
    listing = actions.add_parser("list", help="list the experiments: id, article, claim")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    runner = actions.add_parser("run", help="run experiments by id, or --all")
    runner.add_argument("ids", nargs="*", metavar="ID", help="experiment ids (lab list)")
    runner.add_argument("--all", action="store_true", help="run every experiment")
    runner.add_argument("--json", action="store_true", help="print one JSON document")
    add_color_option(runner)


def _list(args: argparse.Namespace) -> int:
    if args.json:
        doc = {
            "version": LAB_JSON_VERSION,
            "experiments": [
                {"id": e.id, "claim": e.claim, "seed": e.seed, "article": SEEDS[e.seed]}
                for e in EXPERIMENTS
            ],
        }
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        print(render_list(EXPERIMENTS))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        print(
            "undertaker lab run: error: give experiment ids or --all, not both or neither "
            "(undertaker lab list shows the ids)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        chosen = list(EXPERIMENTS) if args.all else [find(i) for i in args.ids]
    except UnknownExperiment as unknown:
        print(
            f"undertaker lab run: error: no experiment {str(unknown.args[0])!r} "
            "(undertaker lab list shows the ids)",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN_EXPERIMENT
    style = Style(use_color(args.color))
    namespace = can_use_namespace()
    results: list[dict[str, Any]] = []
    for sig in (signal.SIGTERM, signal.SIGHUP):  # kill, timeout(1), a closed terminal
        signal.signal(sig, _stopped)
    try:
        for exp in chosen:
            result = run_isolated(exp.id, namespace)  # cleans up its sandbox if interrupted
            results.append(result)
            if not args.json:
                print(render_result(result, style) + "\n", flush=True)
    except _Stopped as stop:
        print(
            f"undertaker lab run: stopped by {signal_name(stop.signum)} after "
            f"{len(results)} of {len(chosen)} experiments; nothing was left running",
            file=sys.stderr,
        )
        return 128 + stop.signum
    if args.json:
        doc = {
            "version": LAB_JSON_VERSION,
            "isolation": "pid-namespace" if namespace else "subreaper",
            "experiments": results,
            "summary": summary_counts(results),
        }
        sys.stdout.write(json.dumps(doc) + "\n")
    elif len(results) > 1:
        print(render_summary(results, style))
    return exit_status(results)


class _Stopped(Exception):
    """SIGTERM or SIGHUP: stop after cleaning up the running experiment."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stopped(signum: int, _frame: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):  # once: the clean-up must not be cut short
        signal.signal(sig, signal.SIG_IGN)
    raise _Stopped(signum)


def exit_status(results: list[dict[str, Any]]) -> int:
    """1 when an experiment could not reach a verdict; a refuted claim or a skip is fine."""
    failed = any(r["status"] == "error" for r in results)
    return EXIT_EXPERIMENT_FAILED if failed else EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Dispatch ``lab list`` and ``lab run``."""
    if args.lab_command == "list":
        return _list(args)
    if args.lab_command == "run":
        return _run(args)
    print(
        "undertaker lab: error: give an action: list or run (see undertaker lab --help)",
        file=sys.stderr,
    )
    return EXIT_ERROR
