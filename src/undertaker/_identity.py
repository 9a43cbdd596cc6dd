"""Which process a PID names: its start time and, where the kernel has one, its pidfs inode.

Start times in ``/proc/PID/stat`` are clock ticks (10 ms here), so two
processes that get the same PID within one tick look the same by start time.
Since Linux 6.9 pidfds live in pidfs, where a pidfd's inode number names one
process for the whole boot (measured here: a PID forced to repeat with
``ns_last_pid`` got a new inode). A key holds both; 0 for the inode where
pidfds are plain anonymous inodes.
"""

from __future__ import annotations

import functools
import os
import signal

from undertaker.proc import parse_stat
from undertaker.proc._stat import StatFields, StatParseError

Key = tuple[int, int, int]  # (pid, start ticks, pidfs inode or 0)


@functools.cache
def has_pidfs() -> bool:
    """Whether a pidfd's inode names its process (pidfs), unlike an anonymous inode's."""
    try:
        pidfd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return False
    try:
        anon = os.eventfd(0)  # every anonymous-inode file shares one inode
        try:
            return os.fstat(pidfd).st_ino != os.fstat(anon).st_ino
        finally:
            os.close(anon)
    except (AttributeError, OSError):
        return False
    finally:
        os.close(pidfd)


def read_stat(pid: int) -> StatFields | None:
    """Parse ``/proc/PID/stat``, or None if the process is gone or hidden."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return parse_stat(os.read(fd, 4096))
    except (OSError, StatParseError):
        return None
    finally:
        os.close(fd)


def inode(pidfd: int) -> int:
    """The pidfs inode of *pidfd*, or 0 without pidfs."""
    return os.fstat(pidfd).st_ino if has_pidfs() else 0


def observe(pid: int) -> tuple[StatFields, int] | None:
    """Read *pid*'s stat and pidfs inode as one process's, or None if it is gone.

    The pidfd is opened first and the stat read under it, so both describe
    the same process (a PID reused in between fails the open or the read).
    """
    if not has_pidfs():
        fields = read_stat(pid)
        return None if fields is None else (fields, 0)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        fields = read_stat(pid)
        if fields is None:
            return None
        ino = os.fstat(pidfd).st_ino
        # Still ours? A pidfd of a reaped process has nothing to signal.
        return (fields, ino) if _alive_or_zombie(pidfd) else None
    finally:
        os.close(pidfd)


def _alive_or_zombie(pidfd: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False  # reaped: the stat we read may be a newer process's
    except PermissionError:
        return True  # exists, not ours to signal
    return True


def key_of(pid: int) -> Key | None:
    """The key of the process *pid* names now, or None if there is none."""
    seen = observe(pid)
    return None if seen is None else (pid, seen[0].start_ticks, seen[1])
