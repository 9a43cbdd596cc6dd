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
_STOP_LOW = 0x7F  # low byte of a stop: WIFSTOPPED
# ptrace event stops put PTRACE_EVENT_* in bits 16-23 (0x1057f: SIGTRAP, event fork).
_PTRACE_EVENTS = {
    1: "fork",
    2: "vfork",
    3: "clone",
    4: "exec",
    5: "vfork done",
    6: "exit",
    7: "seccomp",
    0x80: "stop",
}
_MAX_RAW = 0xFFFFFF
CAP_SYS_PTRACE = 19


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
        """Wrap *raw*, a status as ``waitpid`` returns it.

        That is 0..0xFFFF, or above it a ptrace event stop (``0x1057f``: the
        event number in bits 16-23 of a stop); other high bits are refused.
        """
        if not 0 <= raw <= _MAX_RAW or (raw > 0xFFFF and raw & 0xFF != _STOP_LOW):
            raise ValueError(f"wait status out of range: {raw:#x}")
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

        Only ASCII digits count: ``int()`` would take ``"٣"`` for 3.

        Raises:
            ValueError: not a number, or not a status ``waitpid`` can return.
        """
        cleaned = text.strip().replace("_", "")
        if not cleaned.isascii():
            raise ValueError(f"not an ASCII number: {text!r}")
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
    def ptrace_event(self) -> int | None:
        """The ``PTRACE_EVENT_*`` number of a ptrace event stop (``status >> 16``), else None."""
        return self.raw >> 16 if self.stopped and self.raw > 0xFFFF else None

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
            return 128 + (os.WSTOPSIG(self.raw) & 0x7F)  # without TRACESYSGOOD's 0x80
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
            signum = os.WSTOPSIG(self.raw)
            if signum == signal.SIGTRAP | 0x80:  # PTRACE_O_TRACESYSGOOD marks syscall stops
                return "stopped by SIGTRAP (ptrace syscall stop)"
            text = f"stopped by {signal_name(signum)}"
            event = self.ptrace_event
            if event is not None:
                text += f" (ptrace event {_PTRACE_EVENTS.get(event, str(event))})"
            return text
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


_WCHAN = 32  # index of stat field 35 (wchan) in the tail after ") "
_EXIT_CODE = 49  # field 52


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        found = tuple(int(n) for n in os.uname().release.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return found >= (major, minor)


def has_cap_sys_ptrace() -> bool:
    """Whether we hold CAP_SYS_PTRACE, which lets us read every exit code in our namespace."""
    try:
        with open("/proc/self/status", "rb") as own:
            for line in own:
                if line.startswith(b"CapEff:"):
                    return bool(int(line[7:], 16) & (1 << CAP_SYS_PTRACE))
    except OSError:  # a procfs of another PID namespace (nsenter -m) has no self for us
        pass
    return os.geteuid() == 0


def _ids_match(pid: int, root: str) -> bool:
    """Our fs uid and gid equal the target's real, effective and saved uids and gids."""
    from undertaker.proc._read import _read  # noqa: PLC0415  (wait.py stays import-light)

    fields = dict(
        line.partition(b":")[::2] for line in _read(f"{root}/{pid}/status", pid).split(b"\n")
    )
    try:
        uids = [int(u) for u in fields[b"Uid"].split()[:3]]
        gids = [int(g) for g in fields[b"Gid"].split()[:3]]
    except (KeyError, ValueError):
        return False
    return set(uids) == {os.geteuid()} and set(gids) == {os.getegid()}


def exit_code_visible(stat: bytes, pid: int, root: str = "/proc") -> bool:
    """Whether a zombie's ``stat`` line (read by us) holds its real exit code.

    The kernel writes field 52 only for a reader that passes
    ``ptrace_may_access(PTRACE_MODE_READ_FSCREDS)`` and a 0 for everyone
    else, which would read as "exited 0". Passing takes CAP_SYS_PTRACE, or
    our fs uid and gid equal to all six of the target's real, effective and
    saved uids and gids (a setgid program run by its user fails this) and,
    on recent kernels, a target that was still dumpable when it died (any
    process that changed ids is not). The same test decides field 35,
    ``wchan``, which Linux 5.16+ sets to 1 for a permitted reader of a
    sleeping or dead task: the kernel's own answer, from the same read.
    Older kernels leave it 0 for zombies; there we compare the six ids.

    Args:
        stat: the content of ``/proc/PID/stat`` of a true zombie.
        pid: the zombie, for the fallback on kernels before 5.16.
        root: the procfs root.

    Raises:
        NoSuchProcess: the process is gone (fallback only).
        AccessDenied: its status file is hidden from us (fallback only).
    """
    tail = stat[stat.rfind(b")") + 2 :].split()
    if len(tail) <= _EXIT_CODE:
        return False
    if tail[_EXIT_CODE] != b"0" or tail[_WCHAN] == b"1":
        return True  # a hidden code is always written as 0, wchan as 0
    if _kernel_at_least(5, 16):
        return False
    return has_cap_sys_ptrace() or _ids_match(pid, root)


def zombie_status(pid: int, root: str = "/proc") -> WaitStatus:
    """Read the exit status the kernel keeps for zombie *pid* until it is reaped.

    Field 52 of ``/proc/PID/stat`` holds it (Linux 3.5+), but only for a
    process we could ptrace-read; for others the kernel writes 0, which would
    read as "exited 0", so we refuse instead of guessing: the uid alone does
    not decide (see :func:`exit_code_visible`).

    A zombie *leader* (main thread exited, other threads alive) shows ``Z``
    too, but it is alive and its 0 is no exit status: it is refused.

    Race: the zombie can be reaped, and its PID reused, right after the read.
    ``wait_for_exit`` shows how to rule that out with a pidfd.

    Args:
        pid: the zombie.
        root: the procfs root.

    Returns:
        The decoded status.

    Raises:
        NoSuchProcess: no such process, or it is not a zombie (a zombie leader
            is not: it is alive).
        AccessDenied: the kernel hides the status from us (no CAP_SYS_PTRACE,
            and the zombie was not dumpable or some of its real, effective or
            saved uids or gids differ from ours).
        ProcUnavailable: the kernel is older than 3.5 and keeps no status there.
    """
    from undertaker._errors import AccessDenied, NoSuchProcess, ProcUnavailable  # noqa: PLC0415
    from undertaker.proc._read import _read  # noqa: PLC0415
    from undertaker.proc._stat import StatParseError, parse_stat  # noqa: PLC0415

    data = _read(f"{root}/{pid}/stat", pid)
    try:
        fields = parse_stat(data)
    except StatParseError as err:
        raise NoSuchProcess(pid, f"unreadable stat: {err}") from None
    if fields.state != "Z":
        raise NoSuchProcess(pid, f"not a zombie (state {fields.state})")
    if fields.threads > 1:
        live = fields.threads - 1
        raise NoSuchProcess(
            pid,
            f"not a zombie: a zombie leader, alive with {live} thread{'s' * (live != 1)}",
        )
    if fields.exit_code is None:
        raise ProcUnavailable(root, "this kernel does not expose exit codes (needs 3.5+)")
    if not exit_code_visible(data, pid, root):
        raise AccessDenied(
            pid,
            "reading a zombie's exit status",
            "CAP_SYS_PTRACE, or the zombie's uids and gids and it dumpable",
        )
    return WaitStatus(fields.exit_code)
