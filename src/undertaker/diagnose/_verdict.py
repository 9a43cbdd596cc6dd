"""From evidence to a verdict: why this parent does not reap. Pure: no reads.

The verdict names are stable (documented in docs/json.md); scripts match on
them. The first rule that applies wins, in this order: the parent is gone or
out of sight; it cannot run (its cgroup frozen, stopped, traced,
uninterruptible, only a zombie leader); its SIGCHLD disposition (ignored too
late, blocked); it waits for another child; it is a namespace's PID 1, or a
subreaper holding orphans it adopted; a handler that reaps too little or not
at all; it never calls wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from undertaker.diagnose._fixes import Fix, fixes_for
from undertaker.diagnose._names import (
    HANDLER_LOSES_SIGNALS,
    HANDLER_NOT_REAPING,
    NAMESPACE_INIT,
    NEVER_WAITS,
    PARENT_EXITED,
    PARENT_FROZEN,
    PARENT_OUTSIDE,
    PARENT_STOPPED,
    PARENT_TRACED,
    PARENT_UNINTERRUPTIBLE,
    PARENT_ZOMBIE_LEADER,
    SIGCHLD_BLOCKED,
    SIGCHLD_IGNORED_LATE,
    SUBREAPER_NOT_REAPING,
    WAITS_FOR_OTHER,
    ZOMBIE_LEADER,
)
from undertaker.diagnose._signals import CAUGHT, IGNORED, sigchld_disposition
from undertaker.diagnose._syscalls import WAITING_FOR_CHILDREN

_SPAWNING = frozenset({"clone", "clone3", "vfork"})

if TYPE_CHECKING:
    from undertaker.diagnose._evidence import Evidence


class Diagnosis(NamedTuple):
    """A verdict, the sentence that explains it, and the fixes, least disruptive first."""

    verdict: str
    reason: str
    fixes: list[Fix]


def _blocked_in(evidence: Evidence) -> str:
    if evidence.syscall_name:
        where = f"blocked in {evidence.syscall_name}()"
        return where + (f", wchan {evidence.wchan}" if evidence.wchan else "")
    if evidence.syscall is not None and evidence.syscall.running:
        return "running"
    return f"sleeping in {evidence.wchan}" if evidence.wchan else "state unknown"


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def wait_target(ev: Evidence) -> str | None:
    """What the parent's blocking wait call is limited to, or None when it waits for any child.

    ``wait4(pid, ...)``: pid > 0 one child, 0 or < -1 a process group;
    ``waitid(idtype, id, ...)``: P_PID (1), P_PGID (2), P_PIDFD (3). The
    arguments of ``/proc/PID/syscall`` are unsigned: -1 reads as 2**64 - 1.
    """
    if ev.syscall is None or ev.syscall_name not in WAITING_FOR_CHILDREN:
        return None
    first, second = ev.syscall.args[0], ev.syscall.args[1]
    if ev.syscall_name == "wait4":
        pid = _signed(first)
        if pid > 0:
            return f"one child, pid {pid}"
        if pid == -1:
            return None
        return f"the children in process group {-pid}" if pid else "its own process group"
    return {1: f"one child, pid {second}", 2: f"the children in process group {second}"}.get(
        first,
        "one child through a pidfd" if first == 3 else None,
    )


def _state_verdict(ev: Evidence) -> tuple[str, str] | None:
    status = ev.status
    assert status is not None  # noqa: S101  (checked by the caller)
    if ev.frozen:
        return (
            PARENT_FROZEN,
            f"the parent's cgroup is frozen ({ev.frozen}): it runs no code until thawed",
        )
    if status.state == "T":
        return PARENT_STOPPED, "the parent is stopped (SIGSTOP or job control): it runs no code"
    if status.state == "t":
        tracer = f"{status.tracer_pid} ({ev.tracer_comm or '?'})"
        return PARENT_TRACED, f"the parent is held in a trace stop by its tracer, pid {tracer}"
    if status.state == "D":
        # The only D sleep of a process creation call is a vfork's wait.
        vfork = (
            ", a vfork: it waits until its new child calls exec or exits"
            if ev.syscall_name in _SPAWNING
            else ""
        )
        return (
            PARENT_UNINTERRUPTIBLE,
            (
                f"the parent is in uninterruptible sleep (wchan {ev.wchan or '?'}{vfork}): "
                "it runs no code until the kernel call returns"
            ),
        )
    if status.state == "Z":
        return (
            PARENT_ZOMBIE_LEADER,
            (
                f"the parent's main thread has exited; its {ev.live_threads} other "
                "thread(s) must call wait, and do not"
            ),
        )
    return None


def _disposition_verdict(ev: Evidence) -> tuple[str, str] | None:
    status = ev.status
    assert status is not None  # noqa: S101  (checked by the caller)
    disposition = sigchld_disposition(status.sig_ign, status.sig_cgt)
    if disposition == IGNORED:
        return (
            SIGCHLD_IGNORED_LATE,
            (
                "SIGCHLD is ignored, so new children are reaped by the kernel, but these "
                "zombies existed before SIG_IGN was set: the kernel does not reap them "
                "retroactively, and only a wait call removes them"
            ),
        )
    if ev.live_threads and ev.blocked_threads == ev.live_threads:
        pending = ", and one is pending" if ev.sigchld_pending else ""
        handler = "its handler never runs" if disposition == CAUGHT else "there is no handler"
        return (
            SIGCHLD_BLOCKED,
            (
                f"SIGCHLD is blocked in every thread{pending}: {handler}, and nothing "
                "collects the signal (sigwaitinfo, signalfd) and then calls wait"
            ),
        )
    return None


def _code_verdict(ev: Evidence) -> tuple[str, str]:
    status = ev.status
    assert status is not None  # noqa: S101  (checked by the caller)
    where = _blocked_in(ev)
    waited = wait_target(ev)
    if waited is not None:
        return WAITS_FOR_OTHER, f"the parent waits for {waited}, and not for these"
    if ev.is_namespace_init:
        return (
            NAMESPACE_INIT,
            (
                "the parent is PID 1 of its PID namespace (a container's entry point) and "
                f"does not reap ({where}): nothing else will adopt these zombies"
            ),
        )
    if ev.adopted:
        these = "these zombies" if ev.adopted == len(ev.zombies) else f"{ev.adopted} of these"
        return (
            SUBREAPER_NOT_REAPING,
            (
                f"the parent is a child subreaper: {these} were forked in another session, "
                "so by another process, and came to it when their own parent exited; it "
                f"does not reap the orphans it adopts ({where})"
            ),
        )
    if sigchld_disposition(status.sig_ign, status.sig_cgt) == CAUGHT:
        if ev.reaped_before:
            return (
                HANDLER_LOSES_SIGNALS,
                (
                    "a SIGCHLD handler is installed and the parent has waited for a child "
                    "before, yet these remain: it may reap only one child per signal "
                    "(signals that arrive together merge into one), or only the children "
                    "it waits for by PID (one earlier targeted wait also counts)"
                ),
            )
        return (
            HANDLER_NOT_REAPING,
            f"a SIGCHLD handler is installed but the parent has never reaped a child ({where})",
        )
    reaped = " (it has reaped other children before)" if ev.reaped_before else ""
    return (
        NEVER_WAITS,
        (
            "SIGCHLD has its default action, so only a wait call in the parent's code reaps, "
            f"and it does not call one{reaped} ({where})"
        ),
    )


def diagnose(evidence: Evidence) -> Diagnosis:
    """Decide why *evidence*'s parent leaves its zombies, and what fixes it."""
    if evidence.gone:
        found = (
            PARENT_EXITED,
            (
                "the parent exited while it was examined: its zombies were adopted by "
                "an init or subreaper; run the diagnosis again"
            ),
        )
    elif evidence.status is None and evidence.unreadable:
        found = (
            PARENT_OUTSIDE,
            "the parent is hidden from us (hidepid, or another user's process)",
        )
    elif evidence.status is None:
        found = (
            PARENT_OUTSIDE,
            (
                "the parent is outside our PID namespace (the zombies' parent PID reads 0 "
                "here): it lives in an enclosing namespace, such as the host of this container"
            ),
        )
    else:
        found = (
            _state_verdict(evidence) or _disposition_verdict(evidence) or _code_verdict(evidence)
        )
    verdict, reason = found
    return Diagnosis(verdict, reason, fixes_for(verdict, evidence))


def leader_diagnosis(pid: int, live_threads: int) -> Diagnosis:
    """The verdict for a zombie leader: alive, not reapable until its last thread ends."""
    return Diagnosis(
        ZOMBIE_LEADER,
        f"pid {pid} is alive: its main thread exited but {live_threads} other "
        "thread(s) still run; no one can reap it until the last one exits",
        [],
    )
