"""The ptrace calls, through ctypes on libc, and one injected system call.

Nothing here decides *whether* to act: callers have checked identities and
permissions. This module attaches with ``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT``
(no SIGSTOP the parent could see), saves every register, runs system calls
inside the stopped thread through an instruction already in its memory (it
never writes to the tracee: patched text is visible to the parent's other
threads, which would execute it), restores the saved words verbatim and
detaches.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import time
from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from undertaker.remedy._arch import Arch

PTRACE_DETACH = 17
PTRACE_SINGLESTEP = 9
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128
NT_PRSTATUS = 1
WALL = 0x40000000  # __WALL: wait for the traced thread whatever its kind
MAX_STEPS = 16  # single steps allowed for one injected call (event stops)
# Signal-delivery stops do not use up steps: a parent pestered with signals
# stops once per signal before the instruction runs. They are bounded apart,
# so a flood faster than we can step cannot hold the parent forever.
MAX_SIGNAL_STOPS = 100_000


class _Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_libc.ptrace.restype = ctypes.c_long


def ptrace(request: int, pid: int, addr: int = 0, data: int | ctypes.c_void_p = 0) -> None:
    """Make one request that returns 0 on success (see ``man 2 ptrace``).

    Raises:
        OSError: with the errno the kernel gave.
    """
    ctypes.set_errno(0)
    if _libc.ptrace(request, pid, addr, data) == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")


class TraceeGone(Exception):
    """The tracee exited or was killed while attached."""


@dataclass
class Tracee:
    """One thread attached with ``PTRACE_SEIZE``, stopped, its registers saved.

    Attributes:
        tid: the traced thread.
        arch: its architecture.
        saved: every register word at the stop, restored verbatim at detach.
        signals: signals that arrived while stopped, delivered again at detach.
        held: how many signal-delivery stops there were (a standard signal
            that arrived again while held is counted but kept once).
    """

    tid: int
    arch: Arch
    saved: list[int] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    held: int = 0
    _buf: ctypes.Array[ctypes.c_uint64] | None = None

    def _regset(self, request: int) -> None:
        assert self._buf is not None  # noqa: S101  (set by attach)
        iov = _Iovec(ctypes.cast(self._buf, ctypes.c_void_p), ctypes.sizeof(self._buf))
        ptrace(request, self.tid, NT_PRSTATUS, ctypes.cast(ctypes.pointer(iov), ctypes.c_void_p))

    def get_regs(self) -> list[int]:
        """Read every register word of the stopped thread."""
        self._regset(PTRACE_GETREGSET)
        assert self._buf is not None  # noqa: S101
        return list(self._buf)

    def set_regs(self, regs: Sequence[int]) -> None:
        """Write every register word of the stopped thread."""
        assert self._buf is not None  # noqa: S101
        for index, word in enumerate(regs):
            self._buf[index] = word
        self._regset(PTRACE_SETREGSET)

    def wait_stop(self) -> tuple[int, int]:
        """Wait for the next stop; return (signal, ptrace event).

        Raises:
            TraceeGone: the thread exited instead of stopping.
        """
        while True:
            try:
                _, status = os.waitpid(self.tid, WALL)
            except InterruptedError:
                continue
            if os.WIFSTOPPED(status):
                return os.WSTOPSIG(status), status >> 16
            raise TraceeGone(f"the parent ended while attached (status {status:#x})")

    def attach(self) -> None:
        """Seize and interrupt the thread, wait for it to stop, save its registers.

        Raises:
            OSError: the kernel refused (EPERM: not permitted or already traced).
        """
        self._buf = (ctypes.c_uint64 * self.arch.words)()
        ptrace(PTRACE_SEIZE, self.tid)
        ptrace(PTRACE_INTERRUPT, self.tid)
        sig, event = self.wait_stop()
        if event == 0 and sig not in (signal.SIGTRAP, signal.SIGSTOP):
            self._hold(sig)  # a signal arrived first: deliver it at detach
        self.saved = self.get_regs()

    def syscall(self, site: int, nr: int, *args: int) -> int:
        """Run system call *nr* with *args* through the instruction at *site*.

        Returns:
            Its return value (negative: -errno).

        Raises:
            TraceeGone: the thread exited.
            RuntimeError: the call did not complete within MAX_STEPS stops.
        """
        self.set_regs(self.arch.call_frame(self.saved, site, nr, *args))
        steps = signal_stops = 0
        while steps < MAX_STEPS and signal_stops < MAX_SIGNAL_STOPS:
            ptrace(PTRACE_SINGLESTEP, self.tid)
            sig, event = self.wait_stop()
            if event == 0 and sig not in (signal.SIGTRAP, signal.SIGSTOP):
                self._hold(sig)  # the instruction did not run yet: step again
                signal_stops += 1
                continue
            steps += 1
            regs = self.get_regs()
            if self.arch.finished(regs, site):
                return self.arch.result(regs)
        raise RuntimeError("the injected call did not complete")

    def _hold(self, sig: int) -> None:
        """Keep *sig* for delivery at detach.

        A standard signal already pending is not queued twice by the kernel
        either, so it is kept once; real-time signals queue, so each is kept.
        """
        self.held += 1
        if sig >= signal.SIGRTMIN or sig not in self.signals:
            self.signals.append(sig)

    def detach(self) -> None:
        """Restore the saved registers verbatim and detach, delivering held signals."""
        first = self.signals[0] if self.signals else 0
        try:
            self.set_regs(self.saved)
            ptrace(PTRACE_DETACH, self.tid, 0, first)
        except OSError as err:
            if err.errno != errno.ESRCH:
                raise
            raise TraceeGone("the parent ended while attached") from None
        for sig in self.signals[1:]:
            os.kill(self.tid, sig)  # rare: more than one signal while stopped


def find_site(pid: int, arch: Arch, mem: int) -> int | None:
    """Find the system call instruction in the tracee's vDSO, else in its libc.

    Reads ``/proc/PID/maps`` and, through *mem* (an open ``/proc/PID/mem``),
    the executable mapping; returns an address or None.
    """
    with open(f"/proc/{pid}/maps", "rb") as maps:
        lines = maps.read().splitlines()
    ranked: list[tuple[int, int, int]] = []
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or b"x" not in parts[1]:
            continue
        name = parts[5]
        rank = 0 if name == b"[vdso]" else 1 if b"/libc" in name else -1
        if rank >= 0:
            start, end = (int(x, 16) for x in parts[0].split(b"-"))
            ranked.append((rank, start, end))
    for _, start, end in sorted(ranked):
        try:
            code = os.pread(mem, min(end - start, 8 << 20), start)
        except OSError:
            continue
        at = code.find(arch.insn)
        while at >= 0 and at % arch.align:
            at = code.find(arch.insn, at + 1)
        if at >= 0:
            return start + at
    return None


def site_for(tracee: Tracee, mem: int, fallback: int | None) -> int | None:
    """The instruction the stopped thread entered its call with, else *fallback*, else None.

    Either is used only if the system call instruction is there now: a parent
    that ran ``execve`` since *fallback* was found has a new memory map, and
    whatever is at the old address would run (a fault kills the parent).
    """
    insn = tracee.arch.insn
    for site in (tracee.arch.current_site(tracee.saved), fallback):
        if site is None:
            continue
        try:
            if os.pread(mem, len(insn), site) == insn:
                return site
        except OSError:
            continue
    return None


def elapsed_since(start: float) -> float:
    """Seconds since *start* on the monotonic clock."""
    return time.monotonic() - start
