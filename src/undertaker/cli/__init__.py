"""The ``undertaker`` command line: parse arguments, call the library, format.

Each subcommand is a module of this package with ``add_parser(subs)`` and
``run(args) -> int``, listed in ``SUBCOMMANDS``. Only the module of the command
being run is imported (``--help`` imports them all), so ``undertaker run``
loads nothing the others need.

Exit codes: 0 nothing found, 1 zombies found (``ps``, ``tree``), 2 error.
"""

from __future__ import annotations

import importlib
import os
import sys

from undertaker._errors import UndertakerError
from undertaker.cli._exit import EXIT_ERROR, EXIT_OK

# typing and argparse are not imported on the path of ``undertaker run``, a
# container's PID 1, where they would cost 4 ms of start-up; mypy is told
# this name is true (pyproject.toml, always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# name -> module under undertaker.cli; the order is the order of --help.
SUBCOMMANDS = {
    "ps": "ps",
    "tree": "tree",
    "status": "status",
    "run": "run",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    if argv is None and sys.argv[1:2] == ["run"]:  # the init: own parser, ends in os._exit
        importlib.import_module("undertaker.cli.run").fast_main(sys.argv[2:])
    from undertaker.cli._parser import build_parser  # noqa: PLC0415  (not for run)

    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv else None
    parser = build_parser(SUBCOMMANDS, first if first in SUBCOMMANDS else None)
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
