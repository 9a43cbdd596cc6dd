"""Why a remedy refused to act; each kind has its own exit status in ``undertaker reap``.

They extend the tree drawn in ``undertaker._errors``::

    UndertakerError
    └── ReapRefused            a remedy would not act, and says why
        ├── NotPermitted       ptrace or a signal is not allowed (Yama, capabilities)
        ├── NotAZombie         the target is not a zombie (any more), or its PID was reused
        ├── LiveZombieLeader   shows Z but has live threads: no parent can reap it yet
        ├── ParentGone         the parent exited or was replaced since the check
        ├── ParentRefused      the parent may not be touched (traced, protected, PID 1, D)
        └── OtherNamespace     /proc numbers processes otherwise than our pidfds would
"""

from __future__ import annotations

from undertaker._errors import UndertakerError


class ReapRefused(UndertakerError):
    """A remedy did not act; the message says why and the target is untouched."""

    def __init__(self, pid: int, reason: str) -> None:
        """Record the process concerned and the reason, printed as one line."""
        super().__init__(f"{reason} (pid={pid})")
        self.pid = pid
        self.reason = reason


class NotPermitted(ReapRefused):
    """The kernel would refuse: ptrace or a signal needs a privilege we lack."""


class NotAZombie(ReapRefused):
    """The target is not a zombie, no longer exists, or its PID now names another process."""


class LiveZombieLeader(ReapRefused):
    """The target's main thread exited but others live on: it is alive, not reapable."""


class ParentGone(ReapRefused):
    """The parent exited, or its PID now names another process."""


class ParentRefused(ReapRefused):
    """The parent may not be acted on: traced, protected, PID 1, kernel thread, stuck in D."""


class OtherNamespace(ReapRefused):
    """The procfs read shows a PID namespace other than ours (``nsenter -m``).

    Its PID N is not our PID N: a pidfd opened for N would name another process.
    """
