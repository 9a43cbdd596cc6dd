"""The ``undertaker`` command line: parse arguments, call the library, format.

Exit codes: 0 nothing found, 1 zombies found (``ps``, ``tree``), 2 error.
Subcommand modules are imported only when used, so each command loads only
what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from undertaker import __version__
from undertaker._errors import UndertakerError

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_ERROR = 2


def _pid(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a PID: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a PID: {text!r} (PIDs are positive)")
    return value


def _pids(text: str) -> list[int]:
    return [_pid(part) for part in text.split(",") if part] or [_pid(text)]


def _user(text: str) -> int:
    if text.isdigit():
        return int(text)
    import pwd  # noqa: PLC0415  (only --user needs the password database)

    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such user: {text!r}") from None


def _flatten(groups: list[list[int]] | None) -> set[int]:
    return {item for group in groups or [] for item in group}


def _add_common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--proc",
        metavar="PATH",
        default=os.environ.get("UNDERTAKER_PROC", "/proc"),
        help="procfs to read (default /proc, or $UNDERTAKER_PROC)",
    )
    sub.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour output: on a terminal only (auto), always, or never; NO_COLOR is honoured",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="undertaker",
        description="Find, explain, clean up, prevent and monitor zombie processes.",
        epilog="Exit status: 0 no zombies, 1 zombies found, 2 error.",
    )
    parser.add_argument("--version", action="version", version=f"undertaker {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")

    ps = subs.add_parser(
        "ps",
        help="list zombies grouped by the parent that must reap them",
        description="List zombies grouped by the parent responsible, under a top-like "
        "Tasks line with PID-table pressure. With --all, list every process like ps -el.",
        epilog="Exit status: 0 no zombies, 1 zombies found, 2 error. "
        "JSON schema: docs/json.md. Environment variables: UNDERTAKER_PROC "
        "(procfs root), NO_COLOR (disable colour).",
    )
    ps.add_argument("--all", "-a", action="store_true", help="list every process, not only zombies")
    ps.add_argument("--json", action="store_true", help="print one JSON document (docs/json.md)")
    ps.add_argument(
        "--pid",
        "-p",
        type=_pids,
        action="append",
        metavar="PID[,PID]",
        help="only these processes (repeatable)",
    )
    ps.add_argument(
        "--ppid",
        type=_pids,
        action="append",
        metavar="PID[,PID]",
        help="only children of these parents (repeatable)",
    )
    ps.add_argument(
        "--user",
        "-u",
        type=_user,
        action="append",
        metavar="USER",
        help="only processes of this user name or uid (repeatable)",
    )
    ps.add_argument(
        "--no-ages",
        action="store_true",
        help="skip the per-zombie time-of-death estimate (/proc/PID/sched)",
    )
    _add_common(ps)

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
    _add_common(tree)
    return parser


def _cmd_ps(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from undertaker._errors import NoSuchProcess  # noqa: PLC0415
    from undertaker.census import selector, take_census  # noqa: PLC0415
    from undertaker.cli._ps import census_json, render_all, render_census  # noqa: PLC0415
    from undertaker.cli._style import Style, use_color  # noqa: PLC0415
    from undertaker.proc import scan  # noqa: PLC0415

    snapshot = scan(args.proc)
    pids, ppids = _flatten(args.pid), _flatten(args.ppid)
    for pid in sorted(pids | ppids):
        if pid not in snapshot.processes:
            raise NoSuchProcess(pid)
    keep = selector(pids, ppids, set(args.user or ()))
    census = take_census(snapshot, keep, ages=not args.no_ages)
    if args.json:
        listed = None
        if args.all:
            listed = [p for p in sorted(snapshot.processes.values()) if keep(p)]
        json.dump(census_json(census, listed), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        style = Style(use_color(args.color))
        if args.all:
            print(render_all(snapshot, keep, style))
        else:
            print(render_census(census, style))
            for pid in sorted(pids):
                proc = snapshot.processes[pid]
                if proc.is_zombie_leader:
                    print(f"pid {pid} is a zombie leader: alive, {proc.threads - 1} live threads")
                elif not proc.is_zombie:
                    print(f"pid {pid} is not a zombie: state {proc.state}")
    return EXIT_FOUND if census.zombies else EXIT_OK


def _cmd_tree(args: argparse.Namespace) -> int:
    from undertaker.cli._style import Style, use_color  # noqa: PLC0415
    from undertaker.cli._tree import render_tree  # noqa: PLC0415
    from undertaker.proc import scan  # noqa: PLC0415

    snapshot = scan(args.proc)
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower()
    print(
        render_tree(
            snapshot,
            Style(use_color(args.color)),
            zombies_only=args.zombies,
            ascii_only=args.ascii or "utf" not in encoding,
        )
    )
    return EXIT_FOUND if snapshot.zombies else EXIT_OK


_COMMANDS = {"ps": _cmd_ps, "tree": _cmd_tree}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return _COMMANDS[args.command](args)
    except UndertakerError as err:
        print(f"undertaker: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (| head): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
