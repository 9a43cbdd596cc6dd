"""Errors of the process-control library (prctl, pidfd, reaper, children, daemon).

They extend the tree drawn in ``undertaker._errors``::

    UndertakerError
    ├── NotSupported           the platform, kernel or sandbox lacks the feature
    ├── TimeoutExpired         a wait ran out of time; the process still runs
    ├── StatusLost             someone else reaped the child: its exit status is gone
    └── DaemonError            daemonize() failed before the daemon was ready
"""

from __future__ import annotations

from undertaker._errors import UndertakerError


class NotSupported(UndertakerError):
    """The feature is missing here: not Linux, too old a kernel, or blocked by seccomp."""

    def __init__(self, feature: str, reason: str) -> None:
        """Record which feature is missing and why."""
        super().__init__(f"{feature} is not available: {reason}")
        self.feature = feature


class TimeoutExpired(UndertakerError):
    """A wait gave up after ``timeout`` seconds; the process had not exited."""

    def __init__(self, pid: int, timeout: float | None) -> None:
        """Record the process and how long we waited."""
        super().__init__(f"process still running after {timeout} s (pid={pid})")
        self.pid = pid
        self.timeout = timeout


class StatusLost(UndertakerError):
    """The child was reaped by other code (a ``waitpid(-1)`` loop, ``SIG_IGN``).

    The kernel hands an exit status to exactly one waiter; whoever reaped the
    child first has it, and it cannot be recovered.
    """

    def __init__(self, pid: int) -> None:
        """Record the child whose status was taken."""
        super().__init__(
            f"exit status lost: the child was reaped by other code (pid={pid}); "
            "look for a SIGCHLD handler calling waitpid(-1) or SIGCHLD set to SIG_IGN"
        )
        self.pid = pid


class DaemonError(UndertakerError):
    """``daemonize()`` failed; the message comes from the daemon side when it can."""
