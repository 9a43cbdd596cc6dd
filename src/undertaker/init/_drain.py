"""Find every descendant of the init in /proc, and signal them without hitting a reused PID.

The init is PID 1 or a child subreaper, so whatever its child leaves behind
(double-forked daemons, ``setsid`` escapees that left the process group)
stays below it in the parent chain: the tree, not the group, is the unit.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal as _signal  # the same functions, with stubs
else:
    import _signal

PROC = "/proc"


def read_stat(pid: int) -> tuple[str, int, int, str, int] | None:
    """``(comm, ppid, pgrp, state, starttime)`` of *pid*, or None if it is gone.

    Fields by ``man 5 proc``: comm is between the first ``(`` and the last
    ``)``, and may contain anything, those two included.
    """
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):  # exited since we listed it
        return None
    right = data.rfind(b")")
    fields = data[right + 2 :].split()
    comm = data[data.find(b"(") + 1 : right].decode("utf-8", "replace")
    return comm, int(fields[1]), int(fields[2]), fields[0].decode(), int(fields[19])


def descendants(root: int, skip: int | None = None) -> dict[int, int]:
    """Live (non-zombie) descendants of *root*, as ``{pid: starttime}``.

    With *skip*, the subtree of that PID is left out (the main child, while
    it still runs and manages its own workers).
    """
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, int]] = {}
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        stat = read_stat(int(name))
        if stat is None:
            continue
        children.setdefault(stat[1], []).append(int(name))
        info[int(name)] = (stat[3], stat[4])
    found: dict[int, int] = {}
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid == skip:
            continue
        todo.extend(children.get(pid, ()))
        state, start = info[pid]
        if state not in "ZX":
            found[pid] = start
    return found


def signal_process(pid: int, starttime: int, signum: int) -> bool:
    """Send *signum* to *pid* if it is still the process we scanned.

    A pidfd pins the process; its start time, read after the pidfd was
    opened, proves the PID was not reused since the scan. Returns False when
    the process is gone or is not the same one any more.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfd (Linux < 5.3, or seccomp): check, then plain kill
        return _kill_checked(pid, starttime, signum)
    try:
        stat = read_stat(pid)
        if stat is None or stat[4] != starttime:
            return False
        _signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
    return True


def _kill_checked(pid: int, starttime: int, signum: int) -> bool:
    stat = read_stat(pid)
    if stat is None or stat[4] != starttime:
        return False
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def own_children(me: int) -> list[int]:
    """The init's direct children, from ``/proc/self/task/TID/children`` or a scan."""
    try:
        with open(f"{PROC}/{me}/task/{me}/children", "rb") as listing:
            return [int(word) for word in listing.read().split()]
    except FileNotFoundError:  # CONFIG_PROC_CHILDREN is off: scan the table
        return [
            int(name)
            for name in os.listdir(PROC)
            if name.isdigit() and (stat := read_stat(int(name))) and stat[1] == me
        ]
