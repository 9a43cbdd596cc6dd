"""Exceptions raised by undertaker, factored out so every layer can share them.

The tree::

    UndertakerError            base of everything undertaker raises on purpose
    ├── ProcUnavailable        the procfs root cannot be listed or read
    ├── NoSuchProcess          the PID does not exist (or vanished, or was reused)
    └── AccessDenied           the kernel refused; says which capability is missing

Each error carries what the user needs to act and prints as one line.
"""

from __future__ import annotations


class UndertakerError(Exception):
    """Base class of the errors undertaker raises on purpose."""


class ProcUnavailable(UndertakerError):
    """The procfs root cannot be listed or read."""

    def __init__(self, root: str, reason: str) -> None:
        """Record which root failed and why."""
        super().__init__(f"cannot read {root}: {reason}")
        self.root = root


class NoSuchProcess(UndertakerError):
    """The process does not exist: it never did, it exited, or its PID was reused."""

    def __init__(self, pid: int, detail: str = "no such process") -> None:
        """Record the PID and what exactly was not found."""
        super().__init__(f"{detail} (pid={pid})")
        self.pid = pid


class AccessDenied(UndertakerError):
    """The kernel refused an operation; ``capability`` names what would allow it."""

    def __init__(self, pid: int | None, what: str, capability: str) -> None:
        """Record the target, the refused operation and the missing capability."""
        target = f" (pid={pid})" if pid is not None else ""
        super().__init__(f"permission denied: {what}{target}; needs {capability}")
        self.pid = pid
        self.capability = capability
