"""undertaker: find, explain, clean up, prevent and monitor zombie processes on Linux.

The package root stays light because ``undertaker ps`` must answer fast and
``undertaker run`` starts as a container's PID 1: importing ``undertaker``
loads the exception tree and the wait-status decoder, nothing more. Every
other public name is imported on first use (PEP 562); type checkers and
readers see ordinary imports below.
"""

from __future__ import annotations

import importlib

from undertaker._errors import AccessDenied, NoSuchProcess, ProcUnavailable, UndertakerError
from undertaker.wait import WaitStatus, signal_name, zombie_status

TYPE_CHECKING = False  # not typing's: see undertaker.cli (start-up of run)
if TYPE_CHECKING:
    from undertaker._control_errors import DaemonError, NotSupported, StatusLost, TimeoutExpired
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
    from undertaker.remedy import ReapRefused, plan_ptrace_reap, reap_via_ptrace

__version__ = "0.1.0"

# Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "Child": "undertaker.children",
    "DaemonError": "undertaker._control_errors",
    "NotSupported": "undertaker._control_errors",
    "Reaped": "undertaker.reaper",
    "Reaper": "undertaker.reaper",
    "ReapRefused": "undertaker.remedy",
    "StatusLost": "undertaker._control_errors",
    "TimeoutExpired": "undertaker._control_errors",
    "become_subreaper": "undertaker.prctl",
    "daemonize": "undertaker.daemon",
    "is_subreaper": "undertaker.prctl",
    "parent_death_signal": "undertaker.prctl",
    "plan_ptrace_reap": "undertaker.remedy",
    "reap_via_ptrace": "undertaker.remedy",
    "set_parent_death_signal": "undertaker.prctl",
    "spawn": "undertaker.children",
    "wait_for_exit": "undertaker.pidfd",
    "write_pid_file": "undertaker.daemon",
}

__all__ = [
    "AccessDenied",
    "Child",
    "DaemonError",
    "NoSuchProcess",
    "NotSupported",
    "ProcUnavailable",
    "ReapRefused",
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
    "plan_ptrace_reap",
    "reap_via_ptrace",
    "set_parent_death_signal",
    "signal_name",
    "spawn",
    "wait_for_exit",
    "write_pid_file",
    "zombie_status",
]


def __getattr__(name: str) -> object:
    """Import a lazily exported name on first use and keep it."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'undertaker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names too, not only those imported so far."""
    return sorted(set(globals()) | set(__all__))
