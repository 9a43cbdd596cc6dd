"""The ``undertaker`` command line: parse arguments, call the library, format.

Each subcommand is a module of this package with ``add_parser(subs)`` and
``run(args) -> int``, listed in ``SUBCOMMANDS``. Only the module of the command
being run is imported (``--help`` imports them all), so ``undertaker run``
loads nothing the others need.

Exit codes: 0 nothing found, 1 zombies found (``ps``, ``tree``) or explained
(``why``) or a finding needs action (``doctor``), 2 error or bad input,
3 no zombies seen in an incomplete view (``ps``, ``tree``: hidepid, other
users), 4-9 a refusal of ``reap`` (see ``cli/_exit.py``), 141 standard output
closed early (as if killed by SIGPIPE).
"""

from __future__ import annotations

import importlib
import sys

from undertaker._errors import UndertakerError
from undertaker.cli._exit import EXIT_ERROR

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
    "why": "why",
    "top": "top",
    "status": "status",
    "doctor": "doctor",
    "run": "run",
    "reap": "reap",
    "exporter": "exporter",
    "fleet": "fleet",
    "lab": "lab",
}

EXIT_PIPE_CLOSED = 128 + 13  # what a shell reports for a process killed by SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    if argv is None and sys.argv[1:2] == ["run"]:  # the init: own parser, ends in os._exit
        importlib.import_module("undertaker.cli.run").fast_main(sys.argv[2:])
    from undertaker.cli._output import OutputFailed, TaggedOutput, discard_output  # noqa: PLC0415

    real_stdout = sys.stdout
    sys.stdout = TaggedOutput(real_stdout)
    try:
        status = _parse_and_run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()
    except UndertakerError as err:
        print(f"undertaker: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except OutputFailed as failed:
        discard_output(real_stdout)
        if isinstance(failed.error, BrokenPipeError):
            return EXIT_PIPE_CLOSED  # the reader went away (| head): nothing to say
        print(f"undertaker: error: cannot write to standard output: {failed}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout = real_stdout
    return status


def _parse_and_run(argv: list[str]) -> int:
    """Parse *argv* and run the subcommand it names."""
    from undertaker.cli._parser import build_parser  # noqa: PLC0415  (not for run)

    first = argv[0] if argv else None
    parser = build_parser(SUBCOMMANDS, first if first in SUBCOMMANDS else None)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the subcommand's parser, which points to its own --help
            parser.innermost(args).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit:
        sys.stdout.flush()  # what --help or --version wrote: a failed write is said, as for ps
        raise
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    module = importlib.import_module(f"undertaker.cli.{SUBCOMMANDS[args.command]}")
    status: int = module.run(args)
    return status
