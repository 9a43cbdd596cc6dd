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
from undertaker._identity import Key, inode, observe
from undertaker.pidfd import can_use_pidfd, pidfd_open
from undertaker.wait import WaitStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Container

    from undertaker.proc._connector import ProcEvents

_PEEK = os.WEXITED | os.WNOHANG | os.WNOWAIT
_REAP = os.WEXITED | os.WNOHANG


class Collected(NamedTuple):
    """One adopted orphan reaped, and why we knew it was adopted."""

    pid: int
    status: WaitStatus
    evidence: str


def _open_exact(key: Key) -> int:
    """A pidfd on the process *key* names, or -1 if the PID now names another (or none)."""
    pid = key[0]
    try:
        fd = pidfd_open(pid)
    except NoSuchProcess:
        return -1
    # With the pidfd pinning a process, matching start time and pidfs inode
    # prove it is the one we judged, not a newer process with its PID.
    seen = observe(pid)
    if seen is None or (pid, seen[0].start_ticks, inode(fd)) != key:
        os.close(fd)
        return -1
    return fd


def reap_exact(key: Key) -> WaitStatus | None:
    """Reap zombie ``key[0]`` only if it is still the process *key* names.

    Without pidfds (before Linux 5.4) a tiny window for PID reuse remains
    between the start-time check and the reap.
    """
    if not can_use_pidfd():
        seen = observe(key[0])
        if seen is None or seen[0].start_ticks != key[1]:
            return None
        try:
            result = os.waitid(os.P_PID, key[0], _REAP)
        except ChildProcessError:
            return None
        return None if result is None else WaitStatus.from_waitid(result)
    fd = _open_exact(key)
    if fd < 0:
        return None
    try:
        result = os.waitid(os.P_PIDFD, fd, _REAP)
    except ChildProcessError:
        return None
    finally:
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


def hand_on(orphans: list[tuple[int, int]]) -> None:
    """Give running adopted orphans, as (pid, pidfd), to the janitor of ``children.py``.

    They are ours to reap and nobody else will: without this a stopped
    Reaper's orphans would end as zombies. Each pidfd goes with its orphan.
    """
    if not orphans:
        return
    from undertaker.children import _janitor_reaper  # noqa: PLC0415  (children imports us)

    janitor = _janitor_reaper()
    for pid, fd in orphans:
        try:
            janitor.manage(pid, pidfd=fd)  # closes fd, even when it refuses
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
        self.claimed: set[Key] = set()
        self.zombie_since: dict[Key, float] = {}  # unproven zombies: first seen dead
        self._reported: set[Key] = set()
        self.unproven: list[int] = []

    def children(self) -> list[_lineage.Child]:
        """Our children now, each with its verdict."""
        return self.lineage.update(_ownership.children_by_thread(), _ownership.adopter_thread())

    def collect(self, managed: Container[int], own_fds: set[int]) -> list[Collected]:
        """Reap the zombie children that evidence shows were adopted."""
        now = time.monotonic()
        children = self.children()
        self.claimed &= {child.key for child in children}  # a claim ends with its process
        since: dict[Key, float] = {}
        claims: _ownership.Claims | None = None
        reaped = []
        for child in children:
            key = child.key
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
            status = reap_exact(key)
            self.lineage.forget(child.pid)  # reaped, or not the process we judged
            if status is not None:
                since.pop(key, None)
                reaped.append(Collected(child.pid, status, child.verdict.evidence))
        self.zombie_since = since
        self._reported &= set(since)
        self.unproven = sorted(key[0] for key in self._reported)
        return reaped

    def _hold_back(self, key: Key) -> None:
        """A zombie without evidence: leave it, and say so once."""
        if key in self._reported:
            return
        self._reported.add(key)
        if self.on_unproven is not None:
            try:
                self.on_unproven(key[0])
            except Exception:  # noqa: BLE001  (report and carry on reaping)
                sys.excepthook(*sys.exc_info())

    def adopted_alive(self, own_fds: set[int]) -> list[tuple[int, int]]:
        """Proven orphans nobody else will wait for, as (pid, pidfd): to hand on at stop.

        Claimed orphans, and those a thread of ours waits for or holds a pidfd
        on, stay with their claimants; each pidfd was opened on the very
        process judged.
        """
        if not can_use_pidfd():
            return []  # the janitor could not hold them safely
        candidates = [
            c
            for c in self.children()
            if c.verdict.kind == _lineage.ADOPTED and c.key not in self.claimed
        ]
        if not candidates:
            return []
        claims = _ownership.collect_claims(own_fds)
        found = []
        for child in candidates:
            if claims.covers(child.pid):
                continue
            fd = _open_exact(child.key)
            if fd >= 0:
                found.append((child.pid, fd))
        return found

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
