"""Read the kernel's process table: records, no policy, no printing.

``scan()`` takes one pass over ``/proc``; the ``read_*`` functions fetch the
slower per-process files on demand.
"""

from undertaker.proc._held import HeldStatFiles
from undertaker.proc._read import (
    ExitClock,
    ZombieReader,
    is_same_process,
    read_cmdline,
    read_nspid,
    read_start_ticks,
    read_status,
    read_task_masks,
)
from undertaker.proc._scan import Process, Snapshot, ZombieKey, scan
from undertaker.proc._stat import StatFields, StatParseError, parse_stat
from undertaker.proc._status import SIGCHLD_BIT, Status, StatusParseError, parse_status

__all__ = [
    "SIGCHLD_BIT",
    "ExitClock",
    "HeldStatFiles",
    "Process",
    "Snapshot",
    "StatFields",
    "StatParseError",
    "Status",
    "StatusParseError",
    "ZombieKey",
    "ZombieReader",
    "is_same_process",
    "parse_stat",
    "parse_status",
    "read_cmdline",
    "read_nspid",
    "read_start_ticks",
    "read_status",
    "read_task_masks",
    "scan",
]
