"""Reap zombies inside their live parent: it calls ``wait4`` for them, through ptrace.

The parent is stopped with ``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT`` (it sees
no SIGSTOP), made to run ``wait4(ZPID, NULL, WNOHANG, NULL)`` for each zombie
through a system call instruction already in its memory, given back every
register verbatim (so an interrupted ``nanosleep``, ``read``, ``accept``,
``select`` or ``epoll_wait`` restarts as the kernel would have restarted it)
and detached. Many zombies are reaped per stop, and a stop ends after
*max_stop* seconds; the rest wait for the next attach.

The tracing runs in a short-lived helper process forked for the purpose: if
the parent never stops (stuck in ``D``) or anything hangs, killing the helper
detaches the kernel's trace, where a tracer that lingered would freeze the
parent in ``t`` as soon as it woke.

What the parent loses: the exit status of each reaped child. Its own later
``wait`` for that child fails with ECHILD (Python's ``subprocess`` then
reports returncode 0; ``multiprocessing`` believes the child alive forever).
The status is read from ``/proc`` before the reap and returned.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.proc._read import read_nspid
from undertaker.remedy._arch import Arch, for_machine
from undertaker.remedy._checks import check_may_ptrace, check_parent
from undertaker.remedy._errors import NotAZombie, NotPermitted, ParentGone, ParentRefused
from undertaker.remedy._target import Target, Zombie, open_parent
from undertaker.remedy._tracer import _run_helper

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from undertaker.wait import WaitStatus


@dataclass
class ZombieOutcome:
    """What happened to one zombie.

    Attributes:
        pid: the zombie.
        status: its exit status, read before the reap (None: hidden from us).
        reaped: True when the parent's injected ``wait4`` returned its PID.
        detail: why not, when not reaped ("" when reaped).
    """

    pid: int
    status: WaitStatus | None
    reaped: bool
    detail: str = ""


@dataclass
class PtraceResult:
    """The outcome of :func:`reap_via_ptrace`.

    Attributes:
        parent: the parent PID.
        outcomes: one per zombie, in the order given.
        stops: how long each stop of the parent lasted, in seconds (from the
            interrupt request to the detach, an upper bound).
        held_signals: signals that arrived while the parent was stopped; each
            was held and delivered at the detach.
    """

    parent: int
    outcomes: list[ZombieOutcome]
    stops: list[float] = field(default_factory=list)
    held_signals: int = 0

    @property
    def reaped(self) -> list[int]:
        """The PIDs reaped."""
        return [o.pid for o in self.outcomes if o.reaped]


class ReapInterrupted(KeyboardInterrupt):
    """^C during :meth:`PtracePlan.execute`, raised once the parent is restored.

    A ``KeyboardInterrupt``, so callers that do not know it stop as before;
    *result* says what was reaped before the interrupt (their exit statuses
    are nowhere else now), and why the rest was not.
    """

    def __init__(self, result: PtraceResult) -> None:
        """Carry the partial *result*."""
        super().__init__(f"interrupted after reaping {len(result.reaped)} zombie(s)")
        self.result = result


def _describe(ret: int, zpid: int) -> str:
    if ret == zpid:
        return ""
    if ret == 0:
        return "wait4 returned 0: not reapable yet (live threads?)"
    if ret == -errno.ECHILD:
        return "wait4: ECHILD, no longer a child of this parent"
    return f"wait4 failed in the parent: {errno.errorcode.get(-ret, -ret)}"


@dataclass
class PtracePlan:
    """Checked targets for one parent, held by pidfds until :meth:`execute` or :meth:`close`.

    Create with :func:`plan_ptrace_reap`; what :meth:`execute` does is what
    the plan shows, to the processes it identified, or nothing.
    """

    parent: Target
    thread: int
    zombies: list[Zombie]
    arch: Arch
    inside: dict[int, int] = field(default_factory=dict)

    def pid_inside(self, zombie: Zombie) -> int:
        """The zombie's PID in its parent's namespace: what the parent's wait4 takes."""
        return self.inside.get(zombie.pid, zombie.pid)

    def execute(self, max_stop: float = 0.005, timeout: float = 5.0) -> PtraceResult:
        """Reap the planned zombies inside the parent.

        Args:
            max_stop: end a stop of the parent once it has lasted this long
                (seconds); the remaining zombies are reaped in later attaches.
            timeout: give up when the parent does not stop, or a batch does
                not finish, within this many seconds.

        Raises:
            ReapInterrupted: ^C (SIGINT); its result holds what was reaped.
            ParentGone: the parent exited or its PID was reused since the plan.
            ParentRefused: the parent did not stop in time (stuck in D).
            NotPermitted: the kernel refused ptrace.
        """
        if not self.parent.same():
            raise ParentGone(self.parent.pid, "the parent exited or was replaced since the check")
        live = [z for z in self.zombies if z.same()]
        answers, stops, held, error, interrupted = _run_helper(self, live, max_stop, timeout)
        outcomes = []
        for z in self.zombies:
            ret = answers.get(z.pid)
            if ret is not None:
                want = self.pid_inside(z)
                reaped = ret == want and not z.alive()
                outcomes.append(
                    ZombieOutcome(z.pid, z.status, reaped=reaped, detail=_describe(ret, want))
                )
            elif z not in live:
                outcomes.append(
                    ZombieOutcome(z.pid, z.status, reaped=False, detail="gone or replaced before")
                )
            else:
                why = "interrupted" if interrupted else error
                why = f"not attempted: {why}" if why else "not attempted"
                outcomes.append(ZombieOutcome(z.pid, z.status, reaped=False, detail=why))
        result = PtraceResult(self.parent.pid, outcomes, stops, held)
        if interrupted:
            raise ReapInterrupted(result)
        if error is not None and not answers:
            raise error
        return result

    def close(self) -> None:
        """Close every pidfd the plan holds."""
        self.parent.close()
        for z in self.zombies:
            z.close()


def _machine_of(pid: int) -> int | None:
    # e_machine of the parent's executable: bytes 18-19 of its ELF header.
    try:
        with open(f"/proc/{pid}/exe", "rb") as exe:
            head = exe.read(20)
    except OSError:
        return None
    return int.from_bytes(head[18:20], "little") if head[:4] == b"\x7fELF" else None


def _own_zombie(zpid: int, parent_pid: int) -> Zombie:
    zombie = Zombie.open(zpid)
    if zombie.ppid != parent_pid:
        zombie.close()
        raise NotAZombie(zpid, f"its parent is {zombie.ppid}, not {parent_pid}")
    return zombie


def _check_traceable(parent: Target, d_timeout: float) -> tuple[int, Arch]:
    thread = int(check_parent(parent, d_timeout))
    check_may_ptrace(parent)
    try:
        arch = for_machine(os.uname().machine)
    except KeyError:
        raise ParentRefused(parent.pid, f"no ptrace module for {os.uname().machine}") from None
    machine = _machine_of(parent.pid)
    if machine is not None and machine != arch.e_machine:
        raise ParentRefused(parent.pid, f"the parent is not a {arch.name} program")
    return thread, arch


def plan_ptrace_reap(
    parent_pid: int, zombie_pids: Sequence[int], d_timeout: float = 1.0
) -> PtracePlan:
    """Check everything that can be checked before stopping the parent.

    Args:
        parent_pid: the parent expected to own every zombie.
        zombie_pids: its zombie children to reap.
        d_timeout: how long to wait for a parent in ``D`` to leave it.

    Raises:
        NotAZombie, LiveZombieLeader: a target is not a reapable zombie, or
            not a child of *parent_pid*.
        ParentGone, ParentRefused, NotPermitted: see :func:`reap_via_ptrace`.
    """
    if not zombie_pids:
        raise ValueError("no zombie to reap")
    zombies: list[Zombie] = []
    parent: Target | None = None
    try:
        zombies.extend(_own_zombie(zpid, parent_pid) for zpid in dict.fromkeys(zombie_pids))
        parent = open_parent(zombies[0])
        return plan_for(parent, zombies, d_timeout)
    except BaseException:
        for target in [*zombies, *([parent] if parent else [])]:
            target.close()
        raise


def plan_for(parent: Target, zombies: list[Zombie], d_timeout: float = 1.0) -> PtracePlan:
    """Plan with targets identified earlier (their pidfds carry the identity over).

    The plan shares the targets: closing it closes them.

    Raises:
        NotAZombie: a zombie is not a child of *parent*, or was reaped or replaced.
        ParentGone, ParentRefused, NotPermitted: see :func:`reap_via_ptrace`.
    """
    for zombie in zombies:
        if zombie.ppid != parent.pid:
            raise NotAZombie(zombie.pid, f"its parent is {zombie.ppid}, not {parent.pid}")
        if not zombie.same():
            raise NotAZombie(zombie.pid, "reaped or replaced since the check")
    thread, arch = _check_traceable(parent, d_timeout)
    return PtracePlan(parent, thread, list(zombies), arch, _pids_inside(parent, zombies))


def _pids_inside(parent: Target, zombies: list[Zombie]) -> dict[int, int]:
    """The zombies' PIDs as a parent in a nested PID namespace (a container) sees them.

    Empty when the parent is in our namespace: then they are the same.

    Raises:
        NotPermitted: a ``status`` we may not read, where a guess could give
            ``wait4`` another child's number. (Not seen in practice: what
            ptrace needs, the same uid or CAP_SYS_PTRACE, also lets us read.)
    """
    try:
        depth = len(read_nspid(parent.pid))
    except NoSuchProcess:
        return {}  # gone: the execute finds it so
    except AccessDenied:
        raise NotPermitted(parent.pid, "cannot read its PID namespace (status hidden)") from None
    inside = {}
    for zombie in zombies if depth > 1 else ():
        try:
            nspid = read_nspid(zombie.pid)
        except NoSuchProcess:
            continue  # reaped meanwhile: the execute finds it gone
        except AccessDenied:
            raise NotPermitted(
                zombie.pid, "cannot read its PID in its parent's namespace"
            ) from None
        if len(nspid) >= depth:  # a child lives in its parent's namespace or below
            inside[zombie.pid] = nspid[depth - 1]
    return inside


def reap_via_ptrace(
    parent_pid: int,
    zombie_pids: Sequence[int],
    *,
    max_stop: float = 0.005,
    timeout: float = 5.0,
) -> PtraceResult:
    """Make *parent_pid* reap its zombie children *zombie_pids*, without killing it.

    See the module docstring for how, and what the parent loses.

    Args:
        parent_pid: the zombies' parent; it keeps running afterwards.
        zombie_pids: the zombies to reap (all children of *parent_pid*).
        max_stop: the longest one stop of the parent may last, in seconds.
        timeout: give up when the parent does not stop within this long.

    Returns:
        One outcome per zombie, with the exit status it had, and the stops.

    Raises:
        NotAZombie: a target is not a zombie, not the parent's child, or gone.
        LiveZombieLeader: a target has live threads: no one can reap it yet.
        ParentGone: the parent exited, or its PID was reused, before we acted.
        ParentRefused: the parent is traced, PID 1, ourselves, under a seccomp
            filter, another architecture, or stuck in ``D``.
        NotPermitted: no CAP_SYS_PTRACE, or Yama forbids it (the message says which).
    """
    plan = plan_ptrace_reap(parent_pid, zombie_pids)
    try:
        return plan.execute(max_stop, timeout)
    finally:
        plan.close()
