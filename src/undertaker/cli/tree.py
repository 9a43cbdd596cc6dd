"""``undertaker tree``: the process tree with zombies and their ancestry marked."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from undertaker.census import take_census
from undertaker.cli._age import add_min_age_option, older_than
from undertaker.cli._common import EXIT_STATUS_HELP, add_color_option, add_proc_option
from undertaker.cli._coverage import assess, exit_status
from undertaker.cli._style import Style, duration, plural, use_color
from undertaker.cli._tree_view import render_tree
from undertaker.proc import scan

if TYPE_CHECKING:
    import argparse


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``tree`` and its options."""
    tree = subs.add_parser(
        "tree",
        help="show the process tree with zombies and their ancestors highlighted",
        description="Show the process tree (like pstree). Zombies are marked <defunct> "
        "and their ancestors highlighted; colour only on a terminal. Childless siblings "
        "that print alike share a line (200*[worker]) unless --all.",
        epilog=EXIT_STATUS_HELP,
    )
    tree.add_argument(
        "--zombies", "-z", action="store_true", help="keep only the branches that lead to a zombie"
    )
    tree.add_argument(
        "--all", "-a", action="store_true", help="one line per process: no 200*[worker] lines"
    )
    tree.add_argument("--ascii", action="store_true", help="draw with ASCII characters")
    add_min_age_option(tree)
    add_proc_option(tree)
    add_color_option(tree)


def run(args: argparse.Namespace) -> int:
    """Scan and draw; exit 1 when zombies were found (3 when none seen in a partial view)."""
    snapshot = scan(args.proc, owners=False, split=True, zombie_reads=args.min_age is not None)
    coverage = assess(snapshot)
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower()
    style = Style(use_color(args.color))
    ascii_only = args.ascii or "utf" not in encoding
    drawing = render_tree(
        snapshot,
        style,
        zombies_only=args.zombies,
        ascii_only=ascii_only,
        expand=args.all,
        incomplete=coverage.incomplete,
    )
    print(drawing)
    for note in coverage.notes(pid_count=False):
        print(style.dim("note: " + note))
    zombies = len(snapshot.zombies)
    if args.min_age is not None and zombies:
        census, younger = older_than(take_census(snapshot), args.min_age, time.time())
        zombies = len(census.zombies)
        if younger:
            print(
                style.dim(
                    f"note: {younger} {plural(younger, 'zombie')} dead for less than "
                    f"{duration(args.min_age)} not counted (--min-age)"
                )
            )
    return exit_status(zombies, coverage)
