"""Identify the processes a remedy acts on, and keep them identified until it acts.

A target is a PID, its start time, and a pidfd opened while the start time
still matched: the pidfd names that one process for as long as it is open.
Before acting, :meth:`Target.check` proves the PID still names it: a pidfd
signal 0 fails once the process has been reaped, and until then its PID
cannot be given to anyone else. A process that replaced it under the same PID
is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from dataclasses import dataclass, field

from undertaker._errors import AccessDenied, NoSuchProcess, UndertakerError
from undertaker.proc._read import _read
from undertaker.proc._stat import StatFields, StatParseError, parse_stat
from undertaker.remedy._errors import LiveZombieLeader, NotAZombie, OtherNamespace, ParentGone
from undertaker.wait import WaitStatus, zombie_status


def read_stat(pid: int, root: str = "/proc") -> StatFields:
    """Read and parse ``/proc/PID/stat``.

    Raises:
        NoSuchProcess: the process is gone or its stat is unreadable.
    """
    try:
        return parse_stat(_read(f"{root}/{pid}/stat", pid))
    except StatParseError as err:
        raise NoSuchProcess(pid, f"unreadable stat: {err}") from None


_OTHER_NAMESPACE = (
    "this /proc shows a PID namespace other than ours (as after nsenter -m), whose PIDs "
    "name other processes here: run undertaker reap inside it (nsenter -t PID -p -m)"
)


_NO_FDS = (errno.EMFILE, errno.ENFILE)


def _out_of_fds(pid: int) -> UndertakerError:
    return UndertakerError(
        "out of file descriptors: one is held for each process acted on; "
        f"raise the limit (ulimit -n) or name fewer (pid={pid})"
    )


def _numbers_like_us(root: str) -> bool:
    """Whether *root* numbers this process as we do.

    Not so in a view of another PID namespace: no ``self`` there for us, or
    another number.
    """
    try:
        return os.readlink(f"{root}/self") == str(os.getpid())
    except OSError:
        return False


def _check_pidfd_names(fd: int, pid: int, root: str) -> None:
    """Refuse unless pidfd *fd* names the process *root* shows as *pid*.

    A pidfd's fdinfo, read through a procfs, gives the PID that procfs numbers
    it by (Linux 5.3+): equal to *pid* only for that very process, whichever
    PID namespace the procfs shows.

    Raises:
        OtherNamespace: it names another process, or the procfs cannot tell.
        NoSuchProcess: the process was reaped since the pidfd was opened.
        UndertakerError: out of file descriptors.
    """
    try:
        with open(f"{root}/self/fdinfo/{fd}", "rb") as info:
            lines = info.read().splitlines()
    except OSError as err:
        if err.errno in _NO_FDS:
            raise _out_of_fds(pid) from None
        raise OtherNamespace(pid, _OTHER_NAMESPACE) from None
    for line in lines:
        if line.startswith(b"Pid:"):
            seen = int(line.split()[1])
            if seen == -1:  # reaped: no PID in any namespace
                raise NoSuchProcess(pid)
            if seen != pid:
                raise OtherNamespace(pid, _OTHER_NAMESPACE)
            return
    # Older kernels write no Pid line: _numbers_like_us() is all we know.


def _tgid(tid: int, root: str) -> str:
    """The process thread *tid* belongs to, as ``/proc`` says ("?" if gone)."""
    try:
        with open(f"{root}/{tid}/status", "rb") as status:
            return next(line.split()[1].decode() for line in status if line.startswith(b"Tgid:"))
    except (OSError, StopIteration, IndexError):
        return "?"


@dataclass
class Target:
    """One process, named by PID and start time, held by a pidfd from check to action."""

    pid: int
    start_ticks: int
    comm: str
    pidfd: int = field(repr=False)

    @classmethod
    def open(cls, pid: int, root: str = "/proc") -> Target:
        """Identify *pid* now and open its pidfd.

        The start time is read before and after ``pidfd_open``: equal, the
        pidfd names the process the start time describes.

        Raises:
            NoSuchProcess: it does not exist, or it was replaced during the check.
            OtherNamespace: *root* shows another PID namespace than ours.
            UndertakerError: out of file descriptors (one pidfd per target).
        """
        first = read_stat(pid, root)
        if not _numbers_like_us(root):
            raise OtherNamespace(pid, _OTHER_NAMESPACE)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise NoSuchProcess(pid) from None
        except OSError as err:  # ENOENT (EINVAL before 6.9): a thread, not a process
            if err.errno in _NO_FDS:
                raise _out_of_fds(pid) from None
            if err.errno not in (errno.ENOENT, errno.EINVAL):
                raise
            raise NoSuchProcess(
                pid, f"a thread of process {_tgid(pid, root)}, not a process"
            ) from None
        try:
            _check_pidfd_names(fd, pid, root)
            again = read_stat(pid, root)
        except UndertakerError:  # NoSuchProcess, OtherNamespace, out of descriptors
            os.close(fd)
            raise
        if again.start_ticks != first.start_ticks:
            os.close(fd)
            raise NoSuchProcess(pid, "replaced by another process during the check")
        return cls(pid, first.start_ticks, first.comm, fd)

    def alive(self) -> bool:
        """Whether the process behind the pidfd is not reaped yet (a zombie counts)."""
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # it exists; we just may not signal it
        return True

    def same(self, root: str = "/proc") -> bool:
        """Whether the PID still names this process: not reaped, same start time."""
        if not self.alive():
            return False
        try:
            return read_stat(self.pid, root).start_ticks == self.start_ticks
        except NoSuchProcess:
            return False

    def close(self) -> None:
        """Close the pidfd (idempotent)."""
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = -1


@dataclass
class Zombie(Target):
    """A zombie to reap: its parent and the exit status it keeps (None if hidden)."""

    ppid: int = 0
    status: WaitStatus | None = None

    @classmethod
    def open(cls, pid: int, root: str = "/proc") -> Zombie:
        """Check that *pid* is a reapable zombie, record its status, open its pidfd.

        Raises:
            NotAZombie: it does not exist or is not a zombie.
            LiveZombieLeader: its main thread exited but other threads live.
        """
        try:
            base = Target.open(pid, root)
        except NoSuchProcess as err:
            raise NotAZombie(pid, str(err).rsplit(" (pid=", 1)[0]) from None
        try:
            fields = read_stat(pid, root)
        except NoSuchProcess:
            base.close()
            raise NotAZombie(pid, "no such process") from None
        if fields.state != "Z":
            base.close()
            raise NotAZombie(pid, f"not a zombie (state {fields.state})")
        if fields.threads > 1:
            base.close()
            raise LiveZombieLeader(
                pid, f"a zombie leader with {fields.threads - 1} live thread(s): not reapable"
            )
        try:
            status: WaitStatus | None = zombie_status(pid, root)
        except AccessDenied:
            status = None  # hidden from us; the reap itself will say if we may act
        except NoSuchProcess:
            base.close()
            raise NotAZombie(pid, "reaped during the check") from None
        return cls(pid, base.start_ticks, fields.comm, base.pidfd, fields.ppid, status)


def open_parent(zombie: Zombie, root: str = "/proc") -> Target:
    """Identify the parent of *zombie*, checking it is still the zombie's parent.

    Raises:
        ParentGone: the parent exited, or the zombie moved to another parent.
    """
    try:
        parent = Target.open(zombie.ppid, root)
    except NoSuchProcess as err:
        raise ParentGone(zombie.ppid, str(err).rsplit(" (pid=", 1)[0]) from None
    try:
        now = read_stat(zombie.pid, root).ppid
    except NoSuchProcess:
        now = -1
    if now != zombie.ppid:
        parent.close()
        raise ParentGone(zombie.ppid, f"no longer the parent of {zombie.pid}")
    return parent
