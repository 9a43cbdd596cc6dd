"""Find every descendant of the init in /proc, and signal them without hitting a reused PID.

The init is PID 1 or a child subreaper, so whatever its child leaves behind
(double-forked daemons, ``setsid`` escapees that left the process group)
stays below it in the parent chain: the tree, not the group, is the unit.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal as _signal  # the same functions, with stubs
    from collections.abc import Callable
else:
    import _signal

PROC = "/proc"
CLK_TCK = os.sysconf("SC_CLK_TCK")
OWN_CHILD = -1  # start time of an own child /proc will not show: plain kill is safe


def proc_is_ours() -> bool:
    """Whether /proc shows this PID namespace (``/proc/self`` is our own PID).

    Not so after ``unshare --pid --fork`` without ``--mount-proc``, or in a
    container that bind-mounts the host's /proc: the PIDs there are another
    namespace's, and reading or signalling by them would hit strangers.
    """
    try:
        return os.readlink(f"{PROC}/self") == str(os.getpid())
    except OSError:  # no /proc at all
        return False


def read_stat(pid: int) -> tuple[str, int, int, str, int] | None:
    """``(comm, ppid, pgrp, state, starttime)`` of *pid*, or None if gone or hidden.

    Fields by ``man 5 proc``: comm is between the first ``(`` and the last
    ``)``, and may contain anything, those two included. Not
    ``undertaker.proc.parse_stat``: that package imports ``typing`` (3 ms),
    which the init keeps off its start-up path.
    """
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):  # exited since we listed it
        return None
    except PermissionError:  # /proc mounted with hidepid=1: another user's process
        return None
    right = data.rfind(b")")
    fields = data[right + 2 :].split()
    comm = data[data.find(b"(") + 1 : right].decode("utf-8", "replace")
    return comm, int(fields[1]), int(fields[2]), fields[0].decode(), int(fields[19])


def scan(root: int) -> dict[int, tuple[int, int]]:
    """Live (non-zombie) descendants of *root*, as ``{pid: (starttime, ppid)}``.

    Direct children of *root* whose stat /proc hides (hidepid) are included
    with start time ``OWN_CHILD``: they are ours and unreaped, so their PID
    cannot be reused. Their list is read before /proc is, so that a child
    adopted meanwhile is not taken for a hidden one.
    """
    own = _children_file(root) if root == os.getpid() else []
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, int, int]] = {}
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        stat = read_stat(int(name))
        if stat is None:
            continue
        children.setdefault(stat[1], []).append(int(name))
        info[int(name)] = (stat[3], stat[4], stat[1])
    found: dict[int, tuple[int, int]] = {}
    for pid in own:
        if pid not in info:
            found[pid] = (OWN_CHILD, root)
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        state, start, parent = info[pid]
        if state not in "ZX":
            found[pid] = (start, parent)
    return found


def walk(root: int) -> dict[int, tuple[int, int]] | None:
    """Like :func:`scan`, but down the ``children`` files from *root*.

    It costs what the tree holds rather than what the whole system does (a
    subreaper on a busy host). None without CONFIG_PROC_CHILDREN.
    """
    if not os.path.exists(f"{PROC}/{root}/task/{root}/children"):
        return None
    found: dict[int, tuple[int, int]] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid in _all_children(parent):
            stat = read_stat(pid)
            if stat is None:  # gone, or hidden (hidepid): only our own are kept
                if parent == root:
                    found[pid] = (OWN_CHILD, root)
                continue
            if stat[3] not in "ZX":
                found[pid] = (stat[4], parent)
                todo.append(pid)
    return found


def _all_children(pid: int) -> list[int]:
    """The children of every thread of *pid* (each thread has its own list)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"{PROC}/{pid}/task")
    except OSError:  # exited meanwhile, or hidden
        return kids
    for tid in tasks:
        try:
            with open(f"{PROC}/{pid}/task/{tid}/children", "rb") as listing:
                kids.extend(int(word) for word in listing.read().split())
        except OSError:  # the thread or the process exited meanwhile
            continue
    return kids


def subtree(tree: dict[int, tuple[int, int]], top: int) -> set[int]:
    """*top* and every process below it in *tree* (a :func:`scan`)."""
    below: dict[int, list[int]] = {}
    for pid, (_, parent) in tree.items():
        below.setdefault(parent, []).append(pid)
    found, todo = {top}, [top]
    while todo:
        for pid in below.get(todo.pop(), ()):
            found.add(pid)
            todo.append(pid)
    return found


def boot_tick() -> int:
    """Now, in the clock ticks since boot of ``/proc/PID/stat``'s start time."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLK_TCK)


def signal_process(pid: int, starttime: int, signum: int, refused: Callable[[int], None]) -> bool:
    """Send *signum* to *pid* if it is still the process we scanned.

    A pidfd pins the process; its start time, read after the pidfd was
    opened, proves the PID was not reused since the scan. Returns False when
    the process is gone, is not the same one any more, or belongs to another
    user (EPERM: *refused* is told).
    """
    if starttime == OWN_CHILD:
        return _kill(pid, signum, refused)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfd (Linux < 5.3, or seccomp): check, then plain kill
        return _kill_checked(pid, starttime, signum, refused)
    try:
        stat = read_stat(pid)
        if stat is None or stat[4] != starttime:
            return False
        return _send(lambda: _signal.pidfd_send_signal(pidfd, signum), pid, refused)
    finally:
        os.close(pidfd)


def _kill_checked(pid: int, starttime: int, signum: int, refused: Callable[[int], None]) -> bool:
    stat = read_stat(pid)
    if stat is None or stat[4] != starttime:
        return False
    return _kill(pid, signum, refused)


def _kill(pid: int, signum: int, refused: Callable[[int], None]) -> bool:
    return _send(lambda: os.kill(pid, signum), pid, refused)


def _send(deliver: Callable[[], None], pid: int, refused: Callable[[int], None]) -> bool:
    """Run *deliver*; False if the target is gone (ESRCH) or refused (EPERM, *refused* told)."""
    try:
        deliver()
    except ProcessLookupError:
        return False
    except PermissionError:
        refused(pid)
        return False
    return True


def _children_file(me: int) -> list[int]:
    """``/proc/ME/task/ME/children`` (the init has one thread); [] if unavailable."""
    try:
        with open(f"{PROC}/{me}/task/{me}/children", "rb") as listing:
            return [int(word) for word in listing.read().split()]
    except OSError:  # CONFIG_PROC_CHILDREN is off
        return []


def own_children(me: int) -> list[int]:
    """The init's direct children, from ``/proc/self/task/TID/children`` or a scan."""
    try:
        with open(f"{PROC}/{me}/task/{me}/children", "rb") as listing:
            return [int(word) for word in listing.read().split()]
    except OSError:  # CONFIG_PROC_CHILDREN is off: scan the table
        return [
            int(name)
            for name in os.listdir(PROC)
            if name.isdigit() and (stat := read_stat(int(name))) and stat[1] == me
        ]
