"""Per-process details a diagnosis needs: where it sleeps, its cgroup (frozen?), its reaping past.

Each reader returns None when the kernel hides the answer (another user's
process without CAP_SYS_PTRACE, a kernel built without the file) and raises
:class:`~undertaker.NoSuchProcess` only when the process is gone, so a
caller can say what it could not read instead of failing.
"""

from __future__ import annotations

from typing import NamedTuple

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.proc._read import _read

# Indexes into the tail of /proc/PID/stat after ") " (man 5 proc number minus 3).
_CMINFLT = 8  # (11) cminflt: minor faults of the children this process waited for
_CMAJFLT = 10  # (13) cmajflt
_CUTIME = 13  # (16) cutime: user time of waited-for children, in clock ticks
_CSTIME = 14  # (17) cstime


class Syscall(NamedTuple):
    """What ``/proc/PID/syscall`` says the main thread is doing."""

    number: int | None  # None: running in user space ("running") or not in a syscall
    running: bool  # the thread was on a CPU, so no syscall could be read
    args: tuple[int, ...]  # the six arguments, when blocked in a syscall


def _optional(path: str, pid: int) -> bytes | None:
    try:
        return _read(path, pid)
    except AccessDenied:
        return None
    except NoSuchProcess:
        raise
    except OSError:
        return None  # EACCES on read (ptrace check at read time), EINVAL on some kernels


def read_wchan(pid: int, root: str = "/proc") -> str | None:
    """Return the kernel function *pid* sleeps in, ``""`` for ``0``, None if unreadable.

    The kernel prints ``0`` for a running task and also, without ptrace
    access (another user's process), for any task: ``""`` means "running"
    only when the caller may trace *pid* and it is in state ``R``.

    Raises:
        NoSuchProcess: the process is gone.
    """
    data = _optional(f"{root}/{pid}/wchan", pid)
    if data is None:
        return None
    text = data.decode("ascii", "replace").strip()
    return "" if text == "0" else text


def parse_syscall(data: bytes) -> Syscall | None:
    """Parse ``/proc/PID/syscall``: ``running``, ``-1 SP PC`` or ``NR ARGS... SP PC``."""
    fields = data.split()
    if not fields:
        return None
    if fields[0] == b"running":
        return Syscall(None, running=True, args=())
    try:
        number = int(fields[0])
        args = tuple(int(a, 16) for a in fields[1:7])
    except ValueError:
        return None
    if number < 0:
        return Syscall(None, running=False, args=())
    return Syscall(number, running=False, args=args)


def read_syscall(pid: int, root: str = "/proc") -> Syscall | None:
    """Return the syscall *pid*'s main thread is blocked in, or None when hidden.

    Reading it takes ptrace access (CAP_SYS_PTRACE or the same uid), and
    ``CONFIG_HAVE_ARCH_TRACEHOOK``.

    Raises:
        NoSuchProcess: the process is gone.
    """
    data = _optional(f"{root}/{pid}/syscall", pid)
    return None if data is None else parse_syscall(data)


def read_cgroup(pid: int, root: str = "/proc") -> list[str] | None:
    """Return the cgroup paths of *pid* (one per hierarchy), or None when hidden.

    Raises:
        NoSuchProcess: the process is gone.
    """
    data = _optional(f"{root}/{pid}/cgroup", pid)
    if data is None:
        return None
    paths = []
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2] not in paths:
            paths.append(parts[2])
    return paths


_CGROUP2_MOUNTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")  # pure v2, hybrid
_FREEZER_V1 = "/sys/fs/cgroup/freezer"


def _nearest(base: str, path: str, name: str, value: bytes) -> str | None:
    """The directory of *path* or its nearest ancestor whose file *name* reads *value*."""
    parts = [part for part in path.split("/") if part]
    for depth in range(len(parts), 0, -1):
        directory = base + "/" + "/".join(parts[:depth])
        try:
            with open(f"{directory}/{name}", "rb") as control:
                if control.read().strip() == value:
                    return directory
        except OSError:
            continue
    return None


def frozen_by(pid: int, root: str = "/proc") -> str | None:
    """The control file that holds *pid* frozen, or None when nothing freezes it.

    A frozen process runs no code until thawed (``docker pause``,
    ``systemctl freeze``, ``kubectl`` debugging): cgroup v2's nearest
    ``cgroup.freeze`` reading 1 (the cgroup's own or an ancestor's), or the
    v1 freezer's ``freezer.state`` of the cgroup that froze itself
    (``freezer.self_freezing`` 1). Writing ``0`` (v2) or ``THAWED`` (v1)
    there thaws it.

    Raises:
        NoSuchProcess: the process is gone.
    """
    data = _optional(f"{root}/{pid}/cgroup", pid)
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and not controllers:
            for base in _CGROUP2_MOUNTS:
                found = _nearest(base, path, "cgroup.freeze", b"1")
                if found:
                    return f"{found}/cgroup.freeze"
        elif "freezer" in controllers.split(","):
            found = _nearest(_FREEZER_V1, path, "freezer.self_freezing", b"1")
            if found:
                return f"{found}/freezer.state"
    return None


def waited_children(stat: bytes) -> tuple[int, int]:
    """Return ``(page faults, clock ticks)`` of the children a process has waited for.

    The kernel adds a child's counters to its parent's ``cminflt``,
    ``cmajflt``, ``cutime`` and ``cstime`` in ``wait_task_zombie``, that is
    only when the parent (any of its threads) reaps it with a ``wait`` call:
    children auto-reaped under ``SIG_IGN`` add nothing. Any forked child
    takes page faults, so a non-zero count proves the process has reaped
    before. The counters start at 0 in each new process and survive exec.

    Args:
        stat: the content of ``/proc/PID/stat``.
    """
    tail = stat[stat.rfind(b")") + 2 :].split()
    if len(tail) <= _CSTIME:
        return (0, 0)
    try:
        return (
            int(tail[_CMINFLT]) + int(tail[_CMAJFLT]),
            int(tail[_CUTIME]) + int(tail[_CSTIME]),
        )
    except ValueError:
        return (0, 0)


def read_stat_bytes(pid: int, root: str = "/proc") -> bytes:
    """Return the raw ``/proc/PID/stat`` line.

    Raises:
        NoSuchProcess: the process is gone.
        AccessDenied: hidden from us (hidepid).
    """
    return _read(f"{root}/{pid}/stat", pid)
