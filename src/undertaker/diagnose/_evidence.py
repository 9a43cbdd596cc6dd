"""Gather what the kernel says about a parent that holds zombies.

The only module of the diagnosis that reads ``/proc`` (through
:mod:`undertaker.proc`); everything it learns goes into one immutable
:class:`Evidence`, from which :mod:`undertaker.diagnose._verdict` decides
without further reads. What the kernel would not show us is named in
``unreadable``, so an unprivileged run says what it missed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.diagnose._container import Container, container_of
from undertaker.diagnose._signals import has_sigchld
from undertaker.diagnose._syscalls import syscall_name
from undertaker.proc import read_cmdline, read_status, read_task_masks
from undertaker.proc._detail import (
    Syscall,
    frozen_by,
    read_cgroup,
    read_stat_bytes,
    read_syscall,
    read_wchan,
    waited_children,
)
from undertaker.proc._stat import StatParseError, parse_stat

if TYPE_CHECKING:
    from undertaker.census import ParentGroup, Zombie
    from undertaker.proc import Status

_PRIVILEGE = "run as root or with CAP_SYS_PTRACE"


class Evidence(NamedTuple):
    """Everything read about one parent and the zombies it holds.

    ``status`` is None when the parent could not be read (gone, outside our
    PID namespace, hidden); ``gone`` tells the first case apart.
    """

    pid: int
    zombies: list[Zombie]
    gone: bool  # exited (or its PID was reused) since the scan
    status: Status | None
    cmdline: list[str] | None
    start_ticks: int | None
    live_threads: int  # threads not in state Z
    blocked_threads: int  # live threads that block SIGCHLD
    tracer_comm: str | None
    wchan: str | None  # None: hidden; "": running
    syscall: Syscall | None
    syscall_name: str | None
    cgroups: list[str] | None
    container: Container | None
    reaped_before: bool | None  # the kernel counted waited-for children; None: unreadable
    unreadable: list[str]  # what we could not read, with what would let us
    sid: int | None = None  # its session, as the scan saw it
    frozen: str | None = None  # the cgroup control file that holds it frozen

    @property
    def nspid(self) -> tuple[int, ...]:
        """The parent's PID in each nested PID namespace, outermost first."""
        return self.status.nspid if self.status is not None else (self.pid,)

    @property
    def is_namespace_init(self) -> bool:
        """Whether the parent is PID 1 of its PID namespace (a container's entry point)."""
        return self.status is not None and self.status.nspid[-1] == 1

    @property
    def sigchld_pending(self) -> bool:
        """Whether a SIGCHLD waits to be delivered (blocked, or not yet handled)."""
        status = self.status
        return status is not None and has_sigchld(status.sig_pnd | status.shd_pnd)

    @property
    def runtime(self) -> str | None:
        """``python`` when the parent runs CPython (its fixes are tailored), else None."""
        name = self.status.name if self.status is not None else None
        return "python" if is_python(self.cmdline, name) else None

    @property
    def adopted(self) -> int:
        """How many of its zombies another process forked: proof that it adopted them.

        A child is born in its parent's session and leaves it only by setsid,
        for a session of its own. A zombie in a session that is neither its
        own nor the parent's was therefore forked elsewhere, as long as the
        parent never called setsid itself (it is no session leader), which
        would have left its earlier children in its old session. Adopted by a
        process that is not a namespace's PID 1, they show it is a subreaper.
        """
        sid = self.sid
        if sid is None or sid == self.pid:
            return 0
        return sum(1 for z in self.zombies if z.process.sid not in (sid, z.process.pid))

    @property
    def forked_without_exec(self) -> int:
        """How many of its zombies carry the parent's own name: probably forked, never exec'd.

        Only a hint: a child that exec'd the same program (a Popen of the same
        interpreter), or a parent that exec'd after forking, looks alike.
        """
        status = self.status
        if status is None:
            return 0
        return sum(1 for z in self.zombies if z.process.comm == status.name)


def _gone(group: ParentGroup) -> Evidence:
    return Evidence(
        pid=group.pid,
        zombies=group.zombies,
        gone=True,
        status=None,
        cmdline=None,
        start_ticks=None,
        live_threads=0,
        blocked_threads=0,
        tracer_comm=None,
        wchan=None,
        syscall=None,
        syscall_name=None,
        cgroups=None,
        container=None,
        reaped_before=None,
        unreadable=[],
    )


def _threads(pid: int, root: str, unreadable: list[str]) -> tuple[int, int]:
    try:
        tasks = read_task_masks(pid, root)
    except AccessDenied:
        unreadable.append(f"per-thread signal masks ({_PRIVILEGE})")
        return (0, 0)
    live = [t for t in tasks if t.state != "Z"]
    return (len(live), sum(1 for t in live if has_sigchld(t.sig_blk)))


def _tracer_comm(tracer: int, root: str) -> str | None:
    if not tracer:
        return None
    try:
        return read_status(tracer, root).name
    except (NoSuchProcess, AccessDenied):
        return None


def gather(group: ParentGroup, root: str = "/proc") -> Evidence:
    """Read the evidence about the parent of *group*.

    The parent may exit at any point; every read after the first is checked
    against the start time the scan saw, so the evidence of a reused PID is
    never mixed in: such a parent is reported as ``gone``.

    Args:
        group: one parent and its zombies, from :func:`undertaker.census.take_census`.
        root: the procfs root.
    """
    pid = group.pid
    if group.process is None:
        return _gone(group)._replace(gone=False)  # outside our PID namespace (ppid 0)
    unreadable: list[str] = []
    try:
        status = read_status(pid, root)
        cmdline = read_cmdline(pid, root)
        live, blocked = _threads(pid, root, unreadable)
        wchan = read_wchan(pid, root)
        syscall = read_syscall(pid, root)
        cgroups = read_cgroup(pid, root)
        frozen = frozen_by(pid, root)
        stat = read_stat_bytes(pid, root)  # last: its start time vouches for the reads above
        fields = parse_stat(stat)
    except (NoSuchProcess, StatParseError):
        return _gone(group)
    except AccessDenied:
        return _gone(group)._replace(gone=False, unreadable=[f"/proc/{pid} ({_PRIVILEGE})"])
    if fields.start_ticks != group.process.start_ticks:
        return _gone(group)
    if wchan == "" and (syscall is None or fields.state != "R"):
        # The kernel prints 0 both for a running task and when it hides the
        # answer from us: only a running one we may trace means "running".
        wchan = None
    if wchan is None:
        unreadable.append(f"wchan ({_PRIVILEGE})")
    if syscall is None and fields.state != "Z":
        unreadable.append(f"syscall ({_PRIVILEGE})")
    if cgroups is None:
        unreadable.append("cgroup")
    hidden = sum(1 for z in group.zombies if z.status is None)
    if hidden:
        # The kernel writes 0 for the exit code of a task we may not ptrace-read.
        unreadable.append(f"exit statuses of {hidden} zombie{'s' * (hidden > 1)} ({_PRIVILEGE})")
    # The counters are readable by anyone; a zero from another user's process
    # is still the kernel's count, not a stand-in.
    faults, ticks = waited_children(stat)
    number = syscall.number if syscall is not None else None
    return Evidence(
        pid=pid,
        zombies=group.zombies,
        gone=False,
        status=status,
        cmdline=cmdline,
        start_ticks=fields.start_ticks,
        live_threads=live,
        blocked_threads=blocked,
        tracer_comm=_tracer_comm(status.tracer_pid, root),
        wchan=wchan,
        syscall=syscall,
        syscall_name=syscall_name(number) if number is not None else None,
        cgroups=cgroups,
        container=container_of(cgroups) if cgroups else None,
        reaped_before=faults > 0 or ticks > 0,
        unreadable=unreadable,
        sid=group.process.sid,
        frozen=frozen,
    )


def is_python(cmdline: list[str] | None, comm: str | None) -> bool:
    """Whether the process runs CPython (``python`` names its interpreter)."""
    name = os.path.basename(cmdline[0]) if cmdline else comm or ""
    return name.startswith("python") or (comm or "").startswith("python")
