"""The ``undertaker`` command line: parse arguments, call the library, format.

Each subcommand is a module of this package with ``add_parser(subs)`` and
``run(args) -> int``, listed in ``SUBCOMMANDS``. Only the module of the command
being run is imported (``--help`` imports them all), so ``undertaker run``
loads nothing the others need.

Exit codes: 0 nothing found, 1 zombies found (``ps``, ``tree``), 2 error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, NoReturn

from undertaker import __version__
from undertaker._errors import UndertakerError
from undertaker.cli._common import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from collections.abc import Sequence

# name -> module under undertaker.cli; the order is the order of --help.
SUBCOMMANDS = {
    "ps": "ps",
    "tree": "tree",
    "status": "status",
    "run": "run",
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``undertaker ps: error: ...`` and a pointer to --help, then exit 2."""
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; with *only*, register just that subcommand (fast path)."""
    parser = _Parser(
        prog="undertaker",
        description="Find, explain, clean up, prevent and monitor zombie processes.",
        epilog="Exit status: 0 no zombies, 1 zombies found, 2 error.",
    )
    parser.add_argument("--version", action="version", version=f"undertaker {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in SUBCOMMANDS.items():
        if only is None or only == name:
            importlib.import_module(f"undertaker.cli.{module}").add_parser(subs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    if argv is None and sys.argv[1:2] == ["run"]:  # the init: own parser, ends in os._exit
        importlib.import_module("undertaker.cli.run").fast_main(sys.argv[2:])
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv else None
    parser = build_parser(first if first in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    module = importlib.import_module(f"undertaker.cli.{SUBCOMMANDS[args.command]}")
    try:
        status: int = module.run(args)
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
    return status
