"""Read the kernel's process table: records, no policy, no printing.

``scan()`` takes one pass over ``/proc``; the ``read_*`` functions fetch the
slower per-process files on demand. ``EventTable`` keeps a table current from
the kernel's process events; it is imported on first use (it loads ``socket``,
which ``undertaker ps`` and ``run`` never need).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from undertaker.proc._table import EventCounts, EventTable

__all__ = [
    "SIGCHLD_BIT",
    "EventCounts",
    "EventTable",
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


def __getattr__(name: str) -> object:
    """Import ``EventTable`` (and its counters) on first use."""
    if name not in ("EventTable", "EventCounts"):
        raise AttributeError(f"module 'undertaker.proc' has no attribute {name!r}")
    value = getattr(importlib.import_module("undertaker.proc._table"), name)
    globals()[name] = value
    return value
