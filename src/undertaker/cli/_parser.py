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
        """Build as argparse does, told the width."""
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def innermost(self, args: argparse.Namespace) -> _Parser:
        """The parser of the deepest subcommand *args* chose (``lab run``), else this one."""
        kind = argparse._SubParsersAction  # noqa: SLF001  (argparse names it nowhere else)
        parser = self
        while True:
            subs = [a for a in parser._actions if isinstance(a, kind)]
            chosen = subs[0].choices.get(getattr(args, subs[0].dest, None) or "") if subs else None
            if not isinstance(chosen, _Parser):
                return parser
            parser = chosen

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
    return parser
