"""undertaker: find, explain, clean up, prevent and monitor zombie processes on Linux.

The package root stays light (standard library only, nothing heavy at import)
because ``undertaker run`` starts as a container's PID 1.
"""

from undertaker._control_errors import DaemonError, NotSupported, StatusLost, TimeoutExpired
from undertaker._errors import AccessDenied, NoSuchProcess, ProcUnavailable, UndertakerError
from undertaker.children import Child, spawn
from undertaker.daemon import daemonize, write_pid_file
from undertaker.pidfd import wait_for_exit
from undertaker.prctl import (
    become_subreaper,
    is_subreaper,
    parent_death_signal,
    set_parent_death_signal,
)
from undertaker.reaper import Reaped, Reaper
from undertaker.wait import WaitStatus, signal_name, zombie_status

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "Child",
    "DaemonError",
    "NoSuchProcess",
    "NotSupported",
    "ProcUnavailable",
    "Reaped",
    "Reaper",
    "StatusLost",
    "TimeoutExpired",
    "UndertakerError",
    "WaitStatus",
    "__version__",
    "become_subreaper",
    "daemonize",
    "is_subreaper",
    "parent_death_signal",
    "set_parent_death_signal",
    "signal_name",
    "spawn",
    "wait_for_exit",
    "write_pid_file",
    "zombie_status",
]
