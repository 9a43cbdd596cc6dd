"""How much of the process table a scan saw, and which PID limit is closest.

Shared by ``ps`` (text and JSON) and ``tree``: under ``hidepid`` or as
another user, a scan misses processes, so "no zombies" is not an answer and
the PID count is a lower bound; ``/proc/loadavg`` still has the kernel's own
task count. Inside a PID namespace ``kernel.pid_max`` is the namespace's own,
and the host's (which also applies) cannot be read: ``kernel.threads-max``
against that same task count is the system-wide limit we can see.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from undertaker._errors import UndertakerError
from undertaker.cli._exit import EXIT_FOUND, EXIT_INCOMPLETE, EXIT_OK
from undertaker.proc._system import in_child_pid_namespace, loadavg_tasks, threads_max
from undertaker.wait import has_cap_sys_ptrace

if TYPE_CHECKING:
    from undertaker.proc import Snapshot


class Limit(NamedTuple):
    """One limit on the number of PIDs, with what is in use against it."""

    name: str  # "pid_max", "threads-max"
    used: int
    max: int
    used_from: str  # "scan" (the processes we saw) or "loadavg" (the kernel's count)
    scope: str | None  # "system", "namespace" (this PID namespace's own); None: a captured tree


class Coverage(NamedTuple):
    """What a scan may have missed, and the tightest PID limit it can name."""

    incomplete: bool  # some processes were unreadable or hidden from us
    hidden: str | None  # why, in a few words; None when complete
    tasks: int | None  # the kernel's task count (/proc/loadavg), system-wide
    threads_max: int | None
    child_namespace: bool | None  # we run in a PID namespace other than the initial one
    limit: Limit | None  # the limit with the least headroom
    pid_limit: Limit | None = None  # pid_max and the PIDs in use against it (doctor)
    foreign: bool = False  # the procfs shows a PID namespace we are not in (nsenter -m)

    def notes(self, *, pid_count: bool = True) -> list[str]:
        """The caveats a person must read next to the counts.

        Args:
            pid_count: the view shows the PIDs in use against a limit; without
                it (tree, why) the note on the namespace's pid_max is left out.
        """
        notes = []
        if self.hidden:
            notes.append(f"{self.hidden}: counts are lower bounds, zombies may be hidden")
        if self.foreign:
            notes.append(
                "this /proc shows a PID namespace we are not in (no /proc/self for us, as "
                "after nsenter -m): its PIDs are not ours, so run the commands shown inside "
                "it (nsenter -t PID -p -m)"
            )
        if pid_count and self.child_namespace and self.limit is not None:
            notes.append(
                "inside a PID namespace: its own pid_max is capped by the host's, "
                "which cannot be read from here"
            )
        return notes


def _hidden(snapshot: Snapshot) -> str | None:
    if snapshot.unreadable:
        count = snapshot.unreadable
        what = f"{count} {'process' if count == 1 else 'processes'} could not be read"
        if snapshot.hidepid:
            what += f" (hidepid={snapshot.hidepid})"
        return what + " (run as root, or grant CAP_SYS_PTRACE, to see them)"
    return mount_hides(snapshot.hidepid)


def mount_hides(hidepid: str | None) -> str | None:
    """Why other users' processes are out of our sight under *hidepid*, or None."""
    if hidepid and not has_cap_sys_ptrace():
        return f"procfs is mounted hidepid={hidepid}: other users' processes are hidden"
    return None


def not_seen(pid: int, hidden: str) -> UndertakerError:
    """The error for a PID a partial view does not show: it may well exist."""
    return UndertakerError(f"pid {pid} not seen: it may be hidden ({hidden})")


def assess(snapshot: Snapshot) -> Coverage:
    """Say what the scan missed and which PID limit is closest to being hit."""
    hidden = _hidden(snapshot)
    live = os.path.realpath(snapshot.root) == "/proc"  # not a captured tree
    tasks = loadavg_tasks(snapshot.root)
    most = threads_max(snapshot.root)
    child = in_child_pid_namespace() if live else None
    limits = []
    if snapshot.pid_max:
        used, source = snapshot.pids_used, "scan"
        # Every task holds a PID of the initial namespace: there the kernel's
        # count is exact where hidepid leaves our own short.
        if hidden and not child and tasks is not None and tasks > used:
            used, source = tasks, "loadavg"
        scope = ("namespace" if child else "system") if live else None
        limits.append(Limit("pid_max", used, snapshot.pid_max, source, scope))
    if tasks is not None and most:
        limits.append(Limit("threads-max", tasks, most, "loadavg", "system"))
    limit = min(limits, key=lambda lim: lim.max - lim.used) if limits else None
    pids = limits[0] if snapshot.pid_max else None
    foreign = live and not os.path.exists(f"{snapshot.root}/self")
    return Coverage(hidden is not None, hidden, tasks, most, child, limit, pids, foreign)


def exit_status(zombies: int, coverage: Coverage) -> int:
    """1 zombies found, 3 none seen but the view is incomplete, 0 none."""
    if zombies:
        return EXIT_FOUND
    return EXIT_INCOMPLETE if coverage.incomplete else EXIT_OK
