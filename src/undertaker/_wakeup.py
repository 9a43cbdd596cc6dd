"""How a Reaper's thread sleeps: a self-pipe for SIGCHLD and stop(), plus pidfds."""

from __future__ import annotations

import math
import os
import select

MAX_SLEEP = 2_000_000.0  # seconds: poll() takes at most INT_MAX milliseconds


def seconds(name: str, value: float, *, zero: bool = False) -> float:
    """Check that *value* is a finite number of seconds (> 0, or >= 0 with *zero*).

    Raises:
        ValueError: it is not; the message names *name*.
    """
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {'>= 0' if zero else '> 0'}, not {value!r}")
    return float(value)


class Wakeup:
    """A non-blocking self-pipe: ``wake()`` from anywhere (a signal handler too)."""

    def __init__(self) -> None:
        """Open the pipe."""
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        """Make the next (or current) ``sleep()`` return; never blocks, never raises."""
        if self._write >= 0:
            try:
                os.write(self._write, b"\0")
            except OSError:
                pass  # the pipe is full (a wake-up is pending) or closed

    def sleep(self, fds: set[int], timeout: float) -> None:
        """Sleep until woken, one of *fds* is readable, or *timeout* seconds pass."""
        poller = select.poll()  # a few descriptors: cheaper to rebuild than to keep in step
        poller.register(self._read, select.POLLIN)
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(int(timeout * 1000) + 1)
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass  # drained

    def close(self) -> None:
        """Close both ends; later ``wake()`` calls do nothing."""
        read, write = self._read, self._write
        self._read = self._write = -1
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)
