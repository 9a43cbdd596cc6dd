"""Decode wait statuses: the ``WIFEXITED``/``WTERMSIG``/``WCOREDUMP`` family in one value.

The same encoding is used by ``wait4``/``waitpid`` and by the exit code the
kernel keeps for a zombie (field 52 of ``/proc/PID/stat``), so one class
serves both.
"""

from __future__ import annotations

import os
import signal


def signal_name(signum: int) -> str:
    """Return ``SIGSEGV`` for 11, ``SIGRTMIN+3`` for real-time signals, ``signal 99`` otherwise."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        if signal.SIGRTMIN <= signum <= signal.SIGRTMAX:
            return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
        return f"signal {signum}"


class WaitStatus:
    """A raw wait status, decoded.

    Compares equal to the raw ``int`` it was made from, so it can stand where
    code expects the number ``os.waitpid`` returns.

    >>> str(WaitStatus(0x8B))
    'killed by SIGSEGV (core dumped)'
    >>> WaitStatus(7 << 8).exit_code
    7
    """

    __slots__ = ("raw",)

    def __init__(self, raw: int) -> None:
        """Wrap *raw*, a status as ``waitpid`` returns it (0..0xFFFF)."""
        if not 0 <= raw <= 0xFFFF:
            raise ValueError(f"wait status out of range: {raw}")
        self.raw = raw

    @property
    def exited(self) -> bool:
        """``WIFEXITED``: the process called ``exit``."""
        return os.WIFEXITED(self.raw)

    @property
    def exit_code(self) -> int | None:
        """``WEXITSTATUS`` when the process exited, else None."""
        return os.WEXITSTATUS(self.raw) if self.exited else None

    @property
    def signaled(self) -> bool:
        """``WIFSIGNALED``: a signal ended the process."""
        return os.WIFSIGNALED(self.raw)

    @property
    def term_signal(self) -> int | None:
        """``WTERMSIG`` when a signal ended the process, else None."""
        return os.WTERMSIG(self.raw) if self.signaled else None

    @property
    def core_dumped(self) -> bool:
        """``WCOREDUMP``: the kernel wrote (or tried to write) a core file."""
        return self.signaled and os.WCOREDUMP(self.raw)

    @property
    def stopped(self) -> bool:
        """``WIFSTOPPED``: the process is stopped (``WUNTRACED`` or ptrace)."""
        return os.WIFSTOPPED(self.raw)

    @property
    def stop_signal(self) -> int | None:
        """``WSTOPSIG`` when stopped, else None."""
        return os.WSTOPSIG(self.raw) if self.stopped else None

    @property
    def continued(self) -> bool:
        """``WIFCONTINUED``: resumed by ``SIGCONT`` (``WCONTINUED``)."""
        return os.WIFCONTINUED(self.raw)

    @property
    def shell_code(self) -> int:
        """The exit code a shell would report: the code, or 128 + the signal."""
        if self.exited:
            return os.WEXITSTATUS(self.raw)
        if self.signaled:
            return 128 + os.WTERMSIG(self.raw)
        if self.stopped:
            return 128 + os.WSTOPSIG(self.raw)
        return 0

    def __str__(self) -> str:
        """Describe the status the way a person would: ``exited 7``."""
        if self.exited:
            return f"exited {os.WEXITSTATUS(self.raw)}"
        if self.signaled:
            core = " (core dumped)" if os.WCOREDUMP(self.raw) else ""
            return f"killed by {signal_name(os.WTERMSIG(self.raw))}{core}"
        if self.stopped:
            return f"stopped by {signal_name(os.WSTOPSIG(self.raw))}"
        if self.continued:
            return "continued"
        return f"unknown status {self.raw:#x}"

    def __repr__(self) -> str:
        """Show the raw value and its meaning."""
        return f"WaitStatus({self.raw:#x}: {self})"

    def __eq__(self, other: object) -> bool:
        """Equal to another WaitStatus or int with the same raw value."""
        if isinstance(other, WaitStatus):
            return self.raw == other.raw
        if isinstance(other, int) and not isinstance(other, bool):
            return self.raw == other
        return NotImplemented

    def __hash__(self) -> int:
        """Hash like the raw int, consistent with equality."""
        return hash(self.raw)
