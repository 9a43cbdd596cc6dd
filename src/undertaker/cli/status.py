"""``undertaker status``: decode a raw wait status, or the one a zombie keeps.

``undertaker status 0x8b`` prints ``killed by SIGSEGV (core dumped); shell
exit code 139``. Values may be decimal, ``0x`` hex, ``0o`` octal or ``0b``
binary, as ``waitpid`` returns them (not the shell's ``$?``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from undertaker._errors import NoSuchProcess, ProcUnavailable
from undertaker.cli._common import EXIT_ERROR, EXIT_OK, add_proc_option, pid_arg
from undertaker.cli._coverage import mount_hides, not_seen
from undertaker.proc._system import boot_time, hidepid
from undertaker.wait import WaitStatus, signal_name, zombie_status

if TYPE_CHECKING:
    from collections.abc import Iterable


def _status_arg(text: str) -> WaitStatus:
    try:
        status = WaitStatus.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a wait status: {text!r} (an ASCII number 0..0xffff or a ptrace "
            "event stop, e.g. 0x8b or 139)"
        ) from None
    if not (status.exited or status.signaled or status.stopped or status.continued):
        # 0x7f would be "stopped by signal 0": no process ends or stops that way.
        raise argparse.ArgumentTypeError(
            f"not a wait status: {text!r} (no process exits, dies or stops that way)"
        )
    return status


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``status`` and its options."""
    sub = subs.add_parser(
        "status",
        help="decode a raw wait status (0x8b) or the exit status a zombie keeps",
        description="Decode raw wait statuses as waitpid() returns them: how the process "
        "ended and the exit code a shell would report. With --zombie, read the "
        "status the kernel keeps for a zombie until it is reaped.",
        epilog="Example: undertaker status 0x8b -> killed by SIGSEGV (core dumped); "
        "shell exit code 139. Exit status: 0 decoded, 2 error.",
    )
    sub.add_argument("statuses", nargs="*", type=_status_arg, metavar="STATUS")
    sub.add_argument(
        "--zombie",
        "-z",
        type=pid_arg,
        action="append",
        default=[],
        metavar="PID",
        help="decode the exit status zombie PID keeps (repeatable)",
    )
    sub.add_argument("--json", action="store_true", help="one JSON object per status")
    add_proc_option(sub)


def _as_json(status: WaitStatus, pid: int | None) -> str:
    signum = status.term_signal or status.stop_signal
    return json.dumps(
        {
            "pid": pid,
            "raw": status.raw,
            "description": str(status),
            "exited": status.exited,
            "exit_code": status.exit_code,
            "signal": signum,
            "signal_name": None if signum is None else signal_name(signum),
            "core_dumped": status.core_dumped,
            "stopped": status.stopped,
            "continued": status.continued,
            "shell_code": status.shell_code,
        }
    )


def _zombie(pid: int, root: str) -> WaitStatus:
    """The status zombie *pid* keeps; an unreadable *root* is said as such, like ``ps``."""
    try:
        return zombie_status(pid, root)
    except NoSuchProcess:
        try:
            os.close(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError as err:
            raise ProcUnavailable(root, err.strerror or str(err)) from None
        try:
            boot_time(root)  # the same test of "is this a procfs" that the scan makes
        except (OSError, ValueError):
            raise ProcUnavailable(root, f"not a procfs (no btime line in {root}/stat)") from None
        hidden = mount_hides(hidepid(root))
        if hidden is not None and not os.path.exists(f"{root}/{pid}"):
            raise not_seen(pid, hidden) from None  # under hidepid it may well exist
        raise


def _lines(args: argparse.Namespace) -> Iterable[str]:
    decoded: list[tuple[WaitStatus, int | None]] = [(s, None) for s in args.statuses]
    decoded += [(_zombie(pid, args.proc), pid) for pid in args.zombie]
    for status, pid in decoded:
        if args.json:
            yield _as_json(status, pid)
        elif pid is not None:
            yield f"{pid}: {status.describe()}"
        else:
            yield status.describe()


def run(args: argparse.Namespace) -> int:
    """Print one line per status."""
    if not args.statuses and not args.zombie:
        print(
            "undertaker status: error: give a STATUS or --zombie PID "
            "(see undertaker status --help)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    for line in _lines(args):
        print(line)
    return EXIT_OK
