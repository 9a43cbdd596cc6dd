"""``undertaker tree``: the process tree with zombies and their ancestry marked."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from undertaker.cli._common import EXIT_FOUND, EXIT_OK, add_color_option, add_proc_option
from undertaker.cli._style import Style, use_color
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
        "and their ancestors highlighted; colour only on a terminal.",
        epilog="Exit status: 0 no zombies, 1 zombies found, 2 error.",
    )
    tree.add_argument(
        "--zombies", "-z", action="store_true", help="keep only the branches that lead to a zombie"
    )
    tree.add_argument("--ascii", action="store_true", help="draw with ASCII characters")
    add_proc_option(tree)
    add_color_option(tree)


def run(args: argparse.Namespace) -> int:
    """Scan and draw; exit 1 when zombies were found."""
    snapshot = scan(args.proc, owners=False)
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower()
    style = Style(use_color(args.color))
    ascii_only = args.ascii or "utf" not in encoding
    print(render_tree(snapshot, style, zombies_only=args.zombies, ascii_only=ascii_only))
    return EXIT_FOUND if snapshot.zombies else EXIT_OK
