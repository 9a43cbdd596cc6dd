"""``undertaker run -- CMD``: run CMD under undertaker's init (see ``undertaker.init``).

``undertaker.cli.main`` sends ``run`` straight to :func:`fast_main`, before
argparse parses anything: the init has its own small parser, and its
start-up time is part of every container start. The argparse side below only
makes ``run`` appear in ``undertaker --help`` and serves a parsed call.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run``; its options are parsed by the init itself."""
    import argparse  # noqa: PLC0415  (already loaded by the caller; keeps run light)

    sub = subs.add_parser(
        "run",
        help="run a command under a container init that reaps, forwards and drains",
        description="Run COMMAND as the child of a minimal init (see undertaker run --help).",
        add_help=False,
        prefix_chars="\0",  # every word, options included, goes to the init's parser
    )
    sub.add_argument("words", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    """Run the init with the words after ``run``; return its exit status."""
    import os  # noqa: PLC0415

    from undertaker.init import run as run_init  # noqa: PLC0415

    return run_init(list(args.words), os.environ)


def fast_main(argv: list[str]) -> NoReturn:
    """Run the init with *argv* (the words after ``run``) and exit the process."""
    from undertaker.init import main  # noqa: PLC0415

    main(argv)
