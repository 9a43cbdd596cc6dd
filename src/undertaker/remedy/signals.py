"""The two remedies that only send signals to a zombie's parent: nudge and kill-parent.

- :func:`nudge` sends SIGCHLD to a parent with a SIGCHLD handler: if it lost
  a coalesced signal (one SIGCHLD for several children, a handler that reaps
  one per call), it now reaps. Harmless to any parent with a handler.
- :func:`kill_parent` ends the parent (SIGTERM, a grace period, SIGKILL), so
  its zombies are adopted by init or the nearest subreaper, which reaps them.
  Never PID 1 of any namespace, a kernel thread, undertaker itself or one of
  its ancestors, or a protected process.

Both act through the pidfds of identified targets (see ``_target.py``).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.pidfd import send_signal, wait_readable
from undertaker.proc._read import read_status
from undertaker.proc._status import SIGCHLD_BIT
from undertaker.remedy._checks import ancestors, has_capability, is_kernel_thread
from undertaker.remedy._errors import NotPermitted, ParentGone, ParentRefused
from undertaker.remedy._target import read_stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from undertaker.remedy._target import Target, Zombie


def wait_gone(zombies: Sequence[Zombie], timeout: float) -> list[int]:
    """Wait up to *timeout* seconds for *zombies* to be reaped; return those reaped."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        gone = [z.pid for z in zombies if not z.alive()]
        if len(gone) == len(zombies) or time.monotonic() >= deadline:
            return gone
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def has_sigchld_handler(pid: int) -> bool:
    """Whether *pid* catches SIGCHLD (SigCgt), so a nudge can make it reap.

    Raises:
        NoSuchProcess: it is gone.
    """
    return bool(read_status(pid).sig_cgt & SIGCHLD_BIT)


CAP_KILL = 5


def _not_permitted(target: Target, sig: int) -> NotPermitted:
    name = signal.Signals(sig).name
    return NotPermitted(target.pid, f"may not send {name}: needs CAP_KILL or its uid")


def check_may_signal(target: Target, sig: int) -> None:
    """Refuse, before sending, a signal the kernel would refuse (for a dry run's sake).

    The kernel's rule: CAP_KILL, or our real or effective uid is the target's
    real or saved uid.

    Raises:
        NotPermitted: neither holds.
        ParentGone: the target is gone.
    """
    if has_capability(CAP_KILL):
        return
    try:
        uids = read_status(target.pid).uids
    except NoSuchProcess:
        raise ParentGone(target.pid, "the parent exited") from None
    except AccessDenied:
        raise _not_permitted(target, sig) from None
    if not {os.getuid(), os.geteuid()} & {uids[0], uids[2]}:
        raise _not_permitted(target, sig)


def _signal(target: Target, sig: int) -> None:
    if not target.same():
        raise ParentGone(target.pid, "the parent exited or was replaced since the check")
    try:
        send_signal(target.pidfd, sig, target.pid)
    except NoSuchProcess:
        raise ParentGone(target.pid, "the parent exited") from None
    except AccessDenied:
        raise _not_permitted(target, sig) from None


def nudge(parent: Target, zombies: Sequence[Zombie], wait: float = 0.5) -> list[int]:
    """Send SIGCHLD to *parent* if it has a handler; return the zombies reaped within *wait*.

    Returns an empty list without signalling when the parent has no SIGCHLD
    handler: the signal would be ignored.

    Raises:
        ParentGone: the parent exited or was replaced.
        NotPermitted: we may not signal it.
    """
    if not has_sigchld_handler(parent.pid):
        return []
    _signal(parent, signal.SIGCHLD)
    return wait_gone(zombies, wait)


def _nspid_is_init(pid: int) -> bool:
    try:
        return read_status(pid).nspid[-1] == 1
    except (NoSuchProcess, AccessDenied):
        return False


def check_killable(parent: Target, protect: Collection[int | str] = ()) -> None:
    """Refuse a parent kill-parent must never end.

    Args:
        parent: the process to end.
        protect: PIDs and command names (``comm``) never to end.

    Raises:
        ParentRefused: PID 1 of any namespace, a kernel thread, undertaker or
            one of its ancestors, or protected.
    """
    pid = parent.pid
    if pid == 1 or _nspid_is_init(pid):
        raise ParentRefused(pid, "the parent is PID 1 of its namespace: ending it ends them all")
    if is_kernel_thread(pid):
        raise ParentRefused(pid, "the parent is a kernel thread")
    if pid in ancestors():
        raise ParentRefused(pid, "the parent is undertaker itself or one of its ancestors")
    check_protected(parent, protect)


def check_protected(parent: Target, protect: Collection[int | str]) -> None:
    """Refuse a parent named, by PID or command name, in *protect*.

    Raises:
        ParentRefused: it is protected; the message names the entry that matched.
    """
    for item in (parent.pid, parent.comm):
        if item in protect:
            raise ParentRefused(parent.pid, f"the parent is protected (--protect {item})")


@dataclass
class KillOutcome:
    """What ending a parent did.

    Attributes:
        signals: the signals sent, in order ("SIGTERM", maybe "SIGKILL").
        adopters: zombie PID -> the PID seen adopting it (None: reaped before we saw).
        reaped: the zombies gone afterwards.
    """

    signals: list[str] = field(default_factory=list)
    adopters: dict[int, int | None] = field(default_factory=dict)
    reaped: list[int] = field(default_factory=list)


def kill_parent(
    parent: Target,
    zombies: Sequence[Zombie],
    grace: float = 5.0,
    protect: Collection[int | str] = (),
) -> KillOutcome:
    """End *parent* (SIGTERM, *grace* seconds, SIGKILL); report who adopted and reaped its zombies.

    Raises:
        ParentRefused: see :func:`check_killable`.
        ParentGone: it exited or was replaced since the check.
        NotPermitted: we may not signal it.
    """
    check_killable(parent, protect)
    outcome = KillOutcome()
    _signal(parent, signal.SIGTERM)
    outcome.signals.append("SIGTERM")
    if not wait_readable(parent.pidfd, grace):
        _signal(parent, signal.SIGKILL)
        outcome.signals.append("SIGKILL")
        wait_readable(parent.pidfd, 5.0)
    deadline = time.monotonic() + max(grace, 1.0)
    pending = list(zombies)
    while pending and time.monotonic() < deadline:
        for z in list(pending):
            if not z.alive():
                outcome.adopters.setdefault(z.pid, None)
                pending.remove(z)
                continue
            try:
                ppid = read_stat(z.pid).ppid
            except NoSuchProcess:
                continue
            if ppid != parent.pid:
                outcome.adopters[z.pid] = ppid
        time.sleep(0.002)
    outcome.reaped = [z.pid for z in zombies if not z.alive()]
    return outcome
