"""Decode wait statuses: the ``WIFEXITED``/``WTERMSIG``/``WCOREDUMP`` family in one value.

The same encoding is used by ``wait4``/``waitpid`` and by the exit code the
kernel keeps for a zombie (field 52 of ``/proc/PID/stat``), so one class
serves both.
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False  # not typing's: see undertaker.cli (start-up of run)
if TYPE_CHECKING:
    from typing_extensions import Self

# si_code values of a SIGCHLD siginfo, as os.waitid returns them (asm-generic/siginfo.h).
CLD_EXITED = 1
CLD_KILLED = 2
CLD_DUMPED = 3
CLD_TRAPPED = 4
CLD_STOPPED = 5
CLD_CONTINUED = 6
_CORE_FLAG = 0x80
_CONTINUED_RAW = 0xFFFF


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

    raw: int

    def __init__(self, raw: int) -> None:
        """Wrap *raw*, a status as ``waitpid`` returns it (0..0xFFFF)."""
        if not 0 <= raw <= 0xFFFF:
            raise ValueError(f"wait status out of range: {raw}")
        self.raw = raw

    @classmethod
    def exited_with(cls, code: int) -> Self:
        """The status of a process that called ``exit(code)``."""
        if not 0 <= code <= 0xFF:
            raise ValueError(f"exit code out of range: {code}")
        return cls(code << 8)

    @classmethod
    def killed_by(cls, signum: int, core_dumped: bool = False) -> Self:
        """The status of a process killed by *signum* (optionally dumping core)."""
        if not 0 < signum < 0x7F:
            raise ValueError(f"signal out of range: {signum}")
        return cls(signum | (_CORE_FLAG if core_dumped else 0))

    @classmethod
    def from_siginfo(cls, code: int, status: int) -> Self:
        """Rebuild the raw status from ``waitid``'s ``si_code`` and ``si_status``.

        ``waitid`` does not return the packed ``waitpid`` number; this packs it
        the way the kernel's ``wait4`` does, so both paths give equal values.

        Raises:
            ValueError: *code* is not a ``CLD_*`` value.
        """
        if code == CLD_EXITED:
            return cls.exited_with(status & 0xFF)
        if code in (CLD_KILLED, CLD_DUMPED):
            return cls.killed_by(status, core_dumped=code == CLD_DUMPED)
        if code in (CLD_STOPPED, CLD_TRAPPED):
            return cls(((status & 0xFF) << 8) | 0x7F)
        if code == CLD_CONTINUED:
            return cls(_CONTINUED_RAW)
        raise ValueError(f"not a SIGCHLD si_code: {code}")

    @classmethod
    def from_waitid(cls, result: os.waitid_result) -> Self:
        """Decode what ``os.waitid`` returned for one child."""
        return cls.from_siginfo(result.si_code, result.si_status)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a raw status written in decimal, ``0x`` hex, ``0o`` octal or ``0b`` binary.

        Raises:
            ValueError: not a number, or outside 0..0xFFFF.
        """
        cleaned = text.strip().replace("_", "")
        try:
            value = int(cleaned, 0)
        except ValueError:
            value = int(cleaned, 10)  # "0139": leading zeros, still plain decimal
        return cls(value)

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
        """``WIFSTOPPED``: the process is stopped (``WUNTRACED`` or ptrace).

        Unlike the C macro, 0x7f alone is not taken for a stop: no signal 0
        stops a process, and the kernel never reports one.
        """
        return os.WIFSTOPPED(self.raw) and os.WSTOPSIG(self.raw) != 0

    @property
    def stop_signal(self) -> int | None:
        """``WSTOPSIG`` when stopped, else None."""
        return os.WSTOPSIG(self.raw) if self.stopped else None

    @property
    def continued(self) -> bool:
        """``WIFCONTINUED``: resumed by ``SIGCONT`` (``WCONTINUED``)."""
        return os.WIFCONTINUED(self.raw)

    @property
    def returncode(self) -> int | None:
        """The ``subprocess`` convention: the exit code, or ``-N`` when killed by signal N.

        None when the process has not ended (stopped or continued).
        """
        if self.exited:
            return os.WEXITSTATUS(self.raw)
        if self.signaled:
            return -os.WTERMSIG(self.raw)
        return None

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

    def describe(self) -> str:
        """``str()`` and the shell code: ``killed by SIGSEGV; shell exit code 139``."""
        if self.exited or self.signaled:
            return f"{self}; shell exit code {self.shell_code}"
        return str(self)

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


def zombie_status(pid: int, root: str = "/proc") -> WaitStatus:
    """Read the exit status the kernel keeps for zombie *pid* until it is reaped.

    Field 52 of ``/proc/PID/stat`` holds it (Linux 3.5+), but only for a
    process we could ptrace-read; for others the kernel writes 0, which would
    read as "exited 0", so we refuse instead of guessing.

    Race: the zombie can be reaped, and its PID reused, right after the read.
    ``wait_for_exit`` shows how to rule that out with a pidfd.

    Args:
        pid: the zombie.
        root: the procfs root.

    Returns:
        The decoded status.

    Raises:
        NoSuchProcess: no such process, or it is not a zombie.
        AccessDenied: the kernel hides the status from us (not root, other uid).
        ProcUnavailable: the kernel is older than 3.5 and keeps no status there.
    """
    from undertaker._errors import AccessDenied, NoSuchProcess, ProcUnavailable  # noqa: PLC0415
    from undertaker.proc import read_status  # noqa: PLC0415  (wait.py stays import-light)
    from undertaker.proc._read import _read  # noqa: PLC0415
    from undertaker.proc._stat import StatParseError, parse_stat  # noqa: PLC0415

    try:
        fields = parse_stat(_read(f"{root}/{pid}/stat", pid))
    except StatParseError as err:
        raise NoSuchProcess(pid, f"unreadable stat: {err}") from None
    if fields.state != "Z":
        raise NoSuchProcess(pid, f"not a zombie (state {fields.state})")
    if fields.exit_code is None:
        raise ProcUnavailable(root, "this kernel does not expose exit codes (needs 3.5+)")
    if os.geteuid() != 0 and read_status(pid, root).uids[0] != os.geteuid():
        raise AccessDenied(pid, "reading a zombie's exit status", "root or the same uid")
    return WaitStatus(fields.exit_code)
