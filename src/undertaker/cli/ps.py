"""``undertaker ps``: zombies grouped by the parent responsible."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from undertaker._errors import NoSuchProcess
from undertaker.census import selector, take_census
from undertaker.cli._age import add_min_age_option, older_than
from undertaker.cli._common import (
    EXIT_STATUS_HELP,
    add_color_option,
    add_proc_option,
    flatten,
    pid_list_arg,
    user_arg,
)
from undertaker.cli._coverage import assess, exit_status, not_seen
from undertaker.cli._ps_json import census_json
from undertaker.cli._ps_view import live_threads, render_all, render_census
from undertaker.cli._style import Style, plural, use_color
from undertaker.proc import scan

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ps`` and its options."""
    ps = subs.add_parser(
        "ps",
        help="list zombies grouped by the parent that must reap them",
        description="List zombies grouped by the parent responsible, under a top-like "
        "Tasks line with PID-table pressure. Zombies of one parent that look alike "
        "(name, exit status) share a row, like pstree's 200*[worker]. With --all, "
        "list every process like ps -el.",
        epilog=EXIT_STATUS_HELP + " Ages marked ~ are estimates from the scheduler clock; "
        "exact ages need a listener that ran when the zombie died (undertaker top, "
        "exporter --events), which a one-shot ps cannot be. JSON schema: docs/json.md. "
        "Environment variables: "
        "UNDERTAKER_PROC (procfs root), NO_COLOR (disable colour), COLUMNS (width).",
    )
    ps.add_argument("--all", "-a", action="store_true", help="list every process, one row each")
    ps.add_argument("--json", action="store_true", help="print one JSON document (docs/json.md)")
    ps.add_argument(
        "--pid",
        "-p",
        type=pid_list_arg,
        action="append",
        metavar="PID[,PID]",
        help="only these processes (repeatable)",
    )
    ps.add_argument(
        "--ppid",
        type=pid_list_arg,
        action="append",
        metavar="PID[,PID]",
        help="only children of these parents (repeatable)",
    )
    ps.add_argument(
        "--user",
        "-u",
        type=user_arg,
        action="append",
        metavar="USER",
        help="only processes of this user name or uid (repeatable)",
    )
    add_min_age_option(ps)
    ps.add_argument(
        "--no-ages",
        action="store_true",
        help="skip the per-zombie time-of-death estimate (/proc/PID/sched)",
    )
    add_proc_option(ps)
    add_color_option(ps)


def _missing(wanted: set[int], seen: Mapping[int, object], hidden: str | None) -> None:
    """Refuse when no asked-for PID is seen; name the ones not seen on stderr.

    With a partial view (*hidden* says why) an unseen PID may exist: it is
    never called gone.
    """
    missing = sorted(pid for pid in wanted if pid not in seen)
    if missing and len(missing) == len(wanted):
        raise NoSuchProcess(missing[0]) if hidden is None else not_seen(missing[0], hidden)
    if missing:
        what = f"no such {plural(len(missing), 'process')}"
        if hidden is not None:
            what = f"not seen, may be hidden ({hidden})"
        print(f"undertaker ps: warning: {what}: {', '.join(map(str, missing))}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Scan, filter, group and print; exit 1 when zombies were found."""
    pids, ppids = flatten(args.pid), flatten(args.ppid)
    every = not (pids or ppids or args.user)  # the census will read every zombie
    snapshot = scan(
        args.proc,
        owners=bool(args.user or args.all),
        split=True,
        zombie_reads=every and not args.no_ages,
    )
    coverage = assess(snapshot)
    _missing(pids, snapshot.processes, coverage.hidden)
    _missing(ppids, snapshot.processes, coverage.hidden)
    keep = selector(pids, ppids, set(args.user or ()))
    census = take_census(snapshot, keep, ages=not args.no_ages)
    younger = 0
    now = time.time()
    if args.min_age is not None:
        census, younger = older_than(census, args.min_age, now)
    status = exit_status(len(census.zombies), coverage)
    if args.json:
        listed = None
        if args.all:
            listed = [p for p in sorted(snapshot.processes.values()) if keep(p)]
        doc = census_json(census, coverage, listed, min_age=args.min_age, younger=younger)
        # Indented for a person at a terminal; compact for a pipe, where json's
        # C encoder runs (indent forces the pure-Python one: 13 ms at 1,000 zombies).
        indent = 1 if sys.stdout.isatty() else None
        sys.stdout.write(json.dumps(doc, indent=indent) + "\n")
        return status
    style = Style(use_color(args.color))
    if args.all:
        print(render_all(snapshot, coverage, keep, style))
        return status
    print(
        render_census(
            census,
            coverage,
            style,
            now=now,
            younger=(younger, args.min_age) if younger else None,
        )
    )
    for pid in sorted(pids & snapshot.processes.keys()):
        proc = snapshot.processes[pid]
        if proc.is_zombie_leader:
            live = live_threads(proc)
            print(f"pid {pid} is a zombie leader: alive, {live} live {plural(live, 'thread')}")
        elif not proc.is_zombie:
            print(f"pid {pid} is not a zombie: state {proc.state}")
    return status
