"""Parse ``/proc/PID/stat``.

Field numbers below are those of ``man 5 proc`` (1-based). The command name
(field 2) sits between the first ``(`` and the *last* ``)``: it may itself
contain parentheses, spaces, newlines and digits, so the split is made on the
last ``)`` and everything after it is split on white space. In that tail,
field N of the manual is at index N - 3.
"""

from __future__ import annotations

from typing import NamedTuple

# Indexes into the tail after ") " (man 5 proc field number minus 3).
STATE = 0  # (3) state
PPID = 1  # (4) ppid
PGRP = 2  # (5) pgrp
SESSION = 3  # (6) session
NUM_THREADS = 17  # (20) num_threads
STARTTIME = 19  # (22) starttime, clock ticks after boot
PROCESSOR = 36  # (39) processor, CPU last run on
EXIT_CODE = 49  # (52) exit_code, Linux 3.5+; 0 when we may not ptrace-read the task


class StatFields(NamedTuple):
    """The fields of one ``/proc/PID/stat`` line that undertaker uses."""

    comm: str
    state: str
    ppid: int
    pgid: int
    sid: int
    threads: int
    start_ticks: int
    exit_code: int | None
    cpu: int | None  # CPU the task last ran on


class StatParseError(ValueError):
    """A ``stat`` line did not have the shape the kernel writes."""


def decode_comm(raw: bytes) -> str:
    """Decode a kernel command name; undecodable bytes become backslash escapes."""
    return raw.decode("utf-8", "backslashreplace")


def parse_stat(data: bytes) -> StatFields:
    """Parse the content of one ``/proc/PID/stat`` file.

    Args:
        data: the raw bytes of the file.

    Returns:
        The fields undertaker uses. ``exit_code`` is None on kernels before
        3.5, which do not write field 52.

    Raises:
        StatParseError: the data is not a stat line (truncated, no parentheses,
            non-numeric fields).
    """
    lpar = data.find(b"(")
    rpar = data.rfind(b")")
    if lpar < 0 or rpar < lpar:
        raise StatParseError("no command name in parentheses")
    tail = data[rpar + 2 :].split()
    if len(tail) <= STARTTIME:
        raise StatParseError(f"only {len(tail) + 2} fields")
    try:
        return StatFields(
            decode_comm(data[lpar + 1 : rpar]),
            tail[STATE].decode("ascii"),
            int(tail[PPID]),
            int(tail[PGRP]),
            int(tail[SESSION]),
            int(tail[NUM_THREADS]),
            int(tail[STARTTIME]),
            int(tail[EXIT_CODE]) if len(tail) > EXIT_CODE else None,
            int(tail[PROCESSOR]) if len(tail) > PROCESSOR else None,
        )
    except (ValueError, UnicodeDecodeError) as err:
        raise StatParseError(str(err)) from None
