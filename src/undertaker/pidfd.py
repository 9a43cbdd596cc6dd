"""Process file descriptors: wait for and signal a process without PID-reuse races.

A pidfd names one process for as long as the descriptor is open: signals sent
through it never hit a later process that got the same PID, and it becomes
readable when the process exits (exited, not reaped). Linux 5.3+ and Python
3.9+ (``os.pidfd_open``); ``waitid(P_PIDFD)`` needs Linux 5.4+.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import select
import signal
import time

from undertaker._control_errors import NotSupported, TimeoutExpired
from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.wait import WaitStatus, zombie_status

_POLL_MAX_MS = 2**31 - 1  # poll() takes its timeout as a C int of milliseconds


@functools.cache
def can_use_pidfd() -> bool:
    """Whether ``pidfd_open`` works here; probed once on ourselves and cached.

    ``EMFILE``/``ENFILE`` count as "works" (a transient shortage, not a
    missing feature); ``ENOSYS``/``EPERM`` mean an old kernel or a seccomp
    filter.
    """
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as err:
        return err.errno in (errno.EMFILE, errno.ENFILE)
    os.close(fd)
    return True


def pidfd_open(pid: int) -> int:
    """Open a pidfd for *pid* (close-on-exec, blocking).

    Race: *pid* is resolved now; if the process you mean already exited and
    was reaped, the PID may name a newer process. Open the pidfd while you know
    the process is alive or a zombie (for a child: before you reap it).

    Args:
        pid: a process ID (a thread-group leader).

    Returns:
        The new file descriptor; the caller closes it.

    Raises:
        NoSuchProcess: no process has that PID.
        NotSupported: the kernel or a seccomp filter does not allow pidfds.
    """
    if not hasattr(os, "pidfd_open"):
        raise NotSupported("pidfd_open", "needs Linux and Python 3.9+")
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise NoSuchProcess(pid) from None
    except OSError as err:
        if err.errno in (errno.ENOSYS, errno.EPERM):
            raise NotSupported("pidfd_open", os.strerror(err.errno)) from None
        if err.errno == errno.EINVAL:
            raise NoSuchProcess(pid, "not a process ID") from None
        if err.errno == errno.ENOENT:
            raise NoSuchProcess(pid, "a thread, not a process") from None
        raise


def send_signal(pidfd: int, sig: int, pid: int = 0) -> None:
    """Send *sig* to the process behind *pidfd*; safe against PID reuse.

    A zombie accepts the signal and ignores it.

    Args:
        pidfd: an open pidfd.
        sig: the signal number.
        pid: the PID, only used in error messages.

    Raises:
        NoSuchProcess: the process has been reaped.
        AccessDenied: we may not signal it.
    """
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise NoSuchProcess(pid, "process already reaped") from None
    except PermissionError:
        raise AccessDenied(pid, f"sending {sig}", "CAP_KILL or the same uid") from None


def wait_readable(pidfd: int, timeout: float | None) -> bool:
    """Block until the process behind *pidfd* exits; False if *timeout* passes first.

    Readable means exited (a zombie or reaped), not reaped: the exit status is
    still there for its parent. *timeout* is in seconds: None or infinity
    waits for ever, and any finite length works (``poll`` is called in slices
    it accepts).

    Raises:
        ValueError: *timeout* is NaN.
    """
    if timeout is not None and math.isnan(timeout):
        raise ValueError("timeout must be a number of seconds, not NaN")
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if timeout is None or timeout == math.inf:
        return bool(poller.poll())
    deadline = time.monotonic() + timeout
    while True:
        left = max(deadline - time.monotonic(), 0.0)
        # poll() takes whole milliseconds in a C int: round up so we never
        # return early, and cap a slice at the largest int (24.8 days).
        if poller.poll(min(math.ceil(left * 1000), _POLL_MAX_MS)):
            return True
        if time.monotonic() >= deadline:
            return False


def wait_for_exit(pid: int, timeout: float | None = None) -> WaitStatus | None:
    """Wait for any process to exit, including ones that are not our children.

    Uses a pidfd, so it sleeps in the kernel instead of polling, and it
    returns as soon as the process is a zombie (psutil's ``wait`` polls and,
    without a timeout, hangs on a zombie it does not own). It never reaps.

    Race: the PID is resolved when the call starts; a process that already
    exited and was reaped may have given its PID to a newer one, which is the
    one we would then wait for. Hold a pidfd from the start if that matters.

    Args:
        pid: the process to wait for.
        timeout: seconds; None waits for ever.

    Returns:
        The exit status the kernel keeps while the process is a zombie, when
        we could read it before its parent reaped it; otherwise None (the
        process is gone, or its status is hidden from us).

    Raises:
        NoSuchProcess: no process had that PID when the call started.
        TimeoutExpired: the process was still running after *timeout* seconds.
        NotSupported: pidfds are not available here.
    """
    fd = pidfd_open(pid)
    try:
        if not wait_readable(fd, timeout):
            raise TimeoutExpired(pid, timeout)
        try:
            status = zombie_status(pid)
        except (NoSuchProcess, AccessDenied):
            return None  # gone, or the kernel hides its status from us: never a false 0
        # The zombie we read is ours only if it was still not reaped after the
        # read: until then its PID cannot have been reused.
        try:
            signal.pidfd_send_signal(fd, 0)
        except ProcessLookupError:
            return None
        return status
    finally:
        os.close(fd)
