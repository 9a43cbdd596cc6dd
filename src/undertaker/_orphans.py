"""The orphan half of a ``Reaper`` pass: judge our children, reap the proven orphans.

Children with evidence of adoption (``_lineage``) are reaped as soon as they
are zombies, unless other code of ours visibly waits for them
(``_ownership``). Children without evidence are left alone; those that stay
zombies longer than the grace are reported, once each, and reaped only when
the program opted in (``reap_unproven``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, NamedTuple

from undertaker import _lineage, _ownership
from undertaker._control_errors import NotSupported
from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.pidfd import can_use_pidfd, pidfd_open
from undertaker.proc import read_start_ticks
from undertaker.wait import WaitStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Container

    from undertaker.proc._connector import ProcEvents

_PEEK = os.WEXITED | os.WNOHANG | os.WNOWAIT
_REAP = os.WEXITED | os.WNOHANG

Identity = tuple[int, int]  # (pid, start ticks)


class Collected(NamedTuple):
    """One adopted orphan reaped, and why we knew it was adopted."""

    pid: int
    status: WaitStatus
    evidence: str


def reap_exact(pid: int, start: int) -> WaitStatus | None:
    """Reap zombie *pid* only if it is still the process that started at *start*."""
    try:
        fd = pidfd_open(pid) if can_use_pidfd() else -1
    except NoSuchProcess:
        return None
    except NotSupported:
        fd = -1
    try:
        # With the pidfd pinning the process, a matching start time proves it
        # is the same zombie we judged, not a new child with its PID.
        if read_start_ticks(pid) != start:
            return None
        # Without pidfds a tiny window for PID reuse remains.
        by_fd = fd >= 0
        result = os.waitid(os.P_PIDFD if by_fd else os.P_PID, fd if by_fd else pid, _REAP)
    except (ChildProcessError, NoSuchProcess):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return None if result is None else WaitStatus.from_waitid(result)


def subscribe(mode: bool | str) -> ProcEvents | None:
    """The kernel's fork events for *mode* True, False or "auto" (when allowed).

    Raises:
        NotSupported, AccessDenied: *mode* is True and the kernel refuses.
    """
    if mode is False:
        return None
    from undertaker.proc._connector import ProcEvents  # noqa: PLC0415  (socket: on demand)

    try:
        return ProcEvents()
    except (NotSupported, AccessDenied):
        if mode is True:
            raise
        return None


def hand_on(pids: list[int]) -> None:
    """Give running adopted orphans to the process-wide janitor (``children.py``).

    They are ours to reap and nobody else will: without this a stopped
    Reaper's orphans would end as zombies.
    """
    if not pids:
        return
    from undertaker.children import _janitor_reaper  # noqa: PLC0415  (children imports us)

    janitor = _janitor_reaper()
    for pid in pids:
        try:
            janitor.manage(pid)
        except (NoSuchProcess, ValueError):
            continue  # reaped meanwhile, or handed over already


class OrphanCollector:
    """What a Reaper knows about its children between passes; used under its lock."""

    def __init__(
        self,
        events: ProcEvents | None,
        grace: float,
        reap_unproven: bool,
        on_unproven: Callable[[int], None] | None,
    ) -> None:
        """Start knowing nothing; the first ``collect()`` judges every child."""
        self.events = events
        self.lineage = _lineage.Lineage(events)
        self.grace = grace
        self.reap_unproven = reap_unproven
        self.on_unproven = on_unproven
        self.claimed: set[Identity] = set()
        self.zombie_since: dict[Identity, float] = {}  # unproven zombies: first seen dead
        self._reported: set[Identity] = set()
        self.unproven: list[int] = []

    def children(self) -> list[_lineage.Child]:
        """Our children now, each with its verdict."""
        return self.lineage.update(_ownership.children_by_thread(), _ownership.adopter_thread())

    def collect(self, managed: Container[int], own_fds: set[int]) -> list[Collected]:
        """Reap the zombie children that evidence shows were adopted."""
        now = time.monotonic()
        children = self.children()
        self.claimed &= {(child.pid, child.start_ticks) for child in children}  # claims end
        since: dict[Identity, float] = {}
        claims: _ownership.Claims | None = None
        reaped = []
        for child in children:
            key = (child.pid, child.start_ticks)
            kind = child.verdict.kind
            if kind == _lineage.OWN or child.pid in managed or key in self.claimed:
                continue
            try:
                if os.waitid(os.P_PID, child.pid, _PEEK) is None:
                    continue  # alive
            except ChildProcessError:
                continue  # reaped by its owner since the listing
            if kind == _lineage.UNKNOWN:
                since[key] = first = self.zombie_since.get(key, now)
                if now - first < self.grace:
                    continue
                if not self.reap_unproven:
                    self._hold_back(key)
                    continue
            if claims is None:
                claims = _ownership.collect_claims(own_fds)
            if claims.covers(child.pid):
                continue
            status = reap_exact(child.pid, child.start_ticks)
            self.lineage.forget(child.pid)  # reaped, or not the process we judged
            if status is not None:
                since.pop(key, None)
                reaped.append(Collected(child.pid, status, child.verdict.evidence))
        self.zombie_since = since
        self._reported &= set(since)
        self.unproven = sorted(pid for pid, _ in self._reported)
        return reaped

    def _hold_back(self, key: Identity) -> None:
        """A zombie without evidence: leave it, and say so once."""
        if key in self._reported:
            return
        self._reported.add(key)
        if self.on_unproven is not None:
            try:
                self.on_unproven(key[0])
            except Exception:  # noqa: BLE001  (report and carry on reaping)
                sys.excepthook(*sys.exc_info())

    def adopted_alive(self) -> list[int]:
        """PIDs of proven orphans still running (to hand on at stop)."""
        return [c.pid for c in self.children() if c.verdict.kind == _lineage.ADOPTED]

    def close(self) -> None:
        """Unsubscribe from the kernel's events."""
        if self.events is not None:
            self.events.close()
            self.events = None

    def forget_in_child(self) -> None:
        """In the child of ``fork()``: drop our copy of the subscription, not the parent's."""
        if self.events is not None:
            self.events.forget_in_child()
            self.events = None
