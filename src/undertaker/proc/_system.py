"""System-wide facts read once per scan: boot time, clock ticks, PID limits."""

from __future__ import annotations

import os
import time


def read_small(path: str) -> bytes:
    """Read a small file in one ``read`` call (procfs files are generated whole)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def boot_time(root: str = "/proc") -> float:
    """Return the boot time in seconds since the epoch (``btime`` of ``/proc/stat``).

    Raises:
        OSError: the file cannot be read.
        ValueError: it has no ``btime`` line.
    """
    data = read_small(root + "/stat")
    start = data.find(b"\nbtime ")
    if start < 0:
        raise ValueError(f"no btime line in {root}/stat")
    end = data.find(b"\n", start + 1)
    return float(data[start + 7 : end if end > 0 else None])


def pid_max(root: str = "/proc") -> int | None:
    """Return ``kernel.pid_max``, or None when the root has no ``sys`` tree."""
    try:
        return int(read_small(root + "/sys/kernel/pid_max"))
    except (OSError, ValueError):
        return None


def threads_max(root: str = "/proc") -> int | None:
    """Return ``kernel.threads-max``, the system-wide cap on tasks, or None if unreadable."""
    try:
        return int(read_small(root + "/sys/kernel/threads-max"))
    except (OSError, ValueError):
        return None


def loadavg_tasks(root: str = "/proc") -> int | None:
    """Return the kernel's count of tasks (threads, zombies included) from ``/proc/loadavg``.

    This is ``nr_threads``: system-wide, in every PID namespace, and blind to
    ``hidepid``, so it stays right when most of the process table is hidden.
    Each task holds one PID in the initial namespace.
    """
    try:
        fields = read_small(root + "/loadavg").split()
        return int(fields[3].partition(b"/")[2])
    except (OSError, ValueError, IndexError):
        return None


# The inode of the initial PID namespace, fixed by the kernel (PROC_PID_INIT_INO).
_INIT_PID_NS = "pid:[4026531836]"


def in_child_pid_namespace() -> bool | None:
    """Whether we run in a PID namespace other than the initial one; None if unknown.

    There, since Linux 6.14, ``kernel.pid_max`` reads the namespace's own
    limit (4194304 unless set), while every ancestor's limit applies too and
    none of them can be read from inside.
    """
    try:
        return os.readlink("/proc/self/ns/pid") != _INIT_PID_NS
    except OSError:
        return None


def clock_ticks() -> int:
    """Return ``USER_HZ``, the unit of ``starttime`` in ``/proc/PID/stat``."""
    return os.sysconf("SC_CLK_TCK")


def hidepid(root: str = "/proc") -> str | None:
    """Return the ``hidepid`` mount option of the procfs at *root*, if any.

    With ``hidepid`` set, other users' processes are unreadable or invisible,
    so counts from a scan are lower bounds.
    """
    try:
        data = read_small("/proc/self/mountinfo")
    except OSError:
        return None
    real = os.path.realpath(root)
    found: str | None = None
    # The last mount on a mount point is the one in effect, so keep looking.
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) < 10 or parts[4] != real or "-" not in parts:
            continue
        fstype_at = parts.index("-") + 1
        options = parts[fstype_at + 2].split(",") if len(parts) > fstype_at + 2 else []
        found = None
        for opt in options:
            if opt.startswith("hidepid="):
                value = opt.partition("=")[2]
                found = None if value in ("0", "off") else value
    return found


def _cgroup_dirs(root: str) -> list[str]:
    """Directories of our own pids cgroup, v1 controller or v2 unified."""
    try:
        data = read_small(f"{root}/self/cgroup").decode("utf-8", "replace")
    except OSError:
        return []
    found = []
    for line in data.splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            found.append("/sys/fs/cgroup/pids" + path)
        elif controllers == "":  # cgroup v2: one hierarchy, mounted at the top or "unified"
            found += ["/sys/fs/cgroup" + path, "/sys/fs/cgroup/unified" + path]
    return found


def cgroup_pids(root: str = "/proc") -> tuple[int, int, str] | None:
    """Return ``(current, limit, cgroup dir)`` of the tightest ``pids`` cgroup limit.

    Inside a container the ``pids`` controller, not ``kernel.pid_max``, is what
    makes fork fail with EAGAIN. Limits of ancestor cgroups apply too, so we
    walk up from our own cgroup and keep the one with the least headroom.
    None when no limit is set or the cgroup files are not visible.
    """
    best: tuple[int, int, str] | None = None
    for start in _cgroup_dirs(root):
        path = start.rstrip("/")
        while path.startswith("/sys/fs/cgroup"):
            try:
                limit = read_small(path + "/pids.max").strip()
                current = int(read_small(path + "/pids.current"))
            except (OSError, ValueError):
                limit = b""
                current = 0
            if limit and limit != b"max":
                candidate = (current, int(limit), path)
                if best is None or candidate[1] - candidate[0] < best[1] - best[0]:
                    best = candidate
            path = os.path.dirname(path)
    return best


def timens_monotonic_offset_ns() -> int:
    """This time namespace's CLOCK_MONOTONIC offset, in ns (0 outside one).

    The proc connector stamps events with the host's CLOCK_MONOTONIC, while
    ``time.monotonic()`` in a time namespace carries its offset: subtract it
    from ours to compare.
    """
    try:
        with open("/proc/self/timens_offsets", "rb") as offsets:
            for line in offsets:
                name, seconds, nanoseconds = line.split()
                if name == b"monotonic":
                    return int(seconds) * 1_000_000_000 + int(nanoseconds)
    except (OSError, ValueError):
        pass  # no time namespaces here (before Linux 5.6): no offset to undo
    return 0


def event_boot_offset_ns() -> int:
    """What to add to a process event's stamp to read it on ``stat``'s clock, in ns.

    Events carry the host's CLOCK_MONOTONIC; ``stat`` start times count
    CLOCK_BOOTTIME as this time namespace sees it.
    """
    boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return boot + timens_monotonic_offset_ns()
