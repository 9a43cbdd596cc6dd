"""The argument parser: one-line errors, one subparser per subcommand module."""

from __future__ import annotations

import argparse
import importlib
from typing import Any, NoReturn

from undertaker import __version__
from undertaker.cli._common import EXIT_ERROR
from undertaker.cli._style import terminal_columns


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the width.

    Left alone it imports shutil (4 ms, with the compression modules) in
    every ``add_argument``.
    """

    def __init__(self, prog: str) -> None:
        columns = terminal_columns() or 80
        super().__init__(prog, width=max(columns - 2, 20))


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build as argparse does; ``subcommands`` is filled by :func:`build_parser`."""
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self.subcommands: dict[str, _Parser] = {}

    def subparser(self, name: str | None) -> _Parser:
        """The parser of subcommand *name*, or this one when there is none."""
        return self.subcommands.get(name or "", self)

    def error(self, message: str) -> NoReturn:
        """Print ``undertaker ps: error: ...`` and a pointer to --help, then exit 2."""
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(subcommands: dict[str, str], only: str | None = None) -> _Parser:
    """Build the parser; with *only*, register just that subcommand (fast path)."""
    parser = _Parser(
        prog="undertaker",
        description="Find, explain, clean up, prevent and monitor zombie processes.",
        epilog="Exit status: 0 no zombies, 1 zombies found, 2 error, 3 no zombies "
        "seen but some processes were hidden (hidepid, other users).",
    )
    parser.add_argument("--version", action="version", version=f"undertaker {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in subcommands.items():
        if only is None or only == name:
            importlib.import_module(f"undertaker.cli.{module}").add_parser(subs)
    parser.subcommands = subs.choices
    return parser
