"""Was this child adopted, or did we fork it? Evidence only, never a guess.

Once a process is our child, ``/proc`` no longer says where it came from: a
child we forked and an orphan re-parented to us look the same. A wrong guess
is costly one way only: reaping a child the program will wait for later
hands the program a false status (``subprocess`` reports 0). So the
cooperative ``Reaper`` reaps a child as an adopted orphan only on positive
evidence that some other process forked it, gathered here:

* **seen elsewhere**: an earlier walk of our descendants saw the same
  process (PID and start time) as the child of another process. A process
  is forked once, so it was not forked by us.
* **another session**: a child inherits the session of the process that
  forks it, and can only leave it for a session of its own (``setsid``). A
  child born while the Reaper ran, in a session that is neither one of ours
  nor its own, was forked by someone else (a daemon's double fork).
* **the fork event** (from the initial PID namespace): the kernel's proc
  connector names the process that forked each new process.
* **filed under another thread** proves the opposite: the kernel files an
  orphan under our first live thread, so a child filed under another thread
  was forked by that thread.

A child without evidence is *unknown*: left alone, and reported by the
Reaper when it stays a zombie. ``docs/library.md`` says where this falls short.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, NamedTuple

from undertaker._identity import Key, observe
from undertaker.proc._system import event_boot_offset_ns

if TYPE_CHECKING:
    from undertaker.proc._connector import ProcEvents
    from undertaker.proc._stat import StatFields

OWN = "own"
ADOPTED = "adopted"
UNKNOWN = "unknown"

_MAX_FORKS = 1 << 17  # fork records kept at most (oldest dropped first)
_KEEP_DEAD = 30.0  # seconds a fork record outlives an exit elsewhere (see _read_events)
_TICK_SLACK = 2  # start times are in clock ticks; allow for rounding on both sides


class Verdict(NamedTuple):
    """Where one child of ours came from, and why we believe it."""

    kind: str  # OWN, ADOPTED or UNKNOWN
    evidence: str


class Child(NamedTuple):
    """One child of ours as classified: its identity and its verdict."""

    key: Key  # (pid, start ticks, pidfs inode): see _identity
    verdict: Verdict

    @property
    def pid(self) -> int:
        """The child's PID."""
        return self.key[0]


def children_of(pid: int) -> list[int]:
    """The children of process *pid*, over all its threads ([] if gone or hidden)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as listing:
                found.extend(int(child) for child in listing.read().split())
        except OSError:
            continue  # the thread ended, or we may not look
    return found


def _boot_ticks() -> int:
    """Now, in the clock ticks after boot that ``stat`` start times use."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


class Lineage:
    """Classify this process's children as they appear; remember the verdicts.

    Args:
        events: a subscription to the kernel's fork and exit events, or None.
        walk_share: the share of time descendant walks may take; a walk that
            took *t* seconds is not repeated before ``t / walk_share``.
        max_walk: the most descendants one walk looks at.
    """

    def __init__(
        self,
        events: ProcEvents | None = None,
        *,
        walk_share: float = 0.2,
        max_walk: int = 20_000,
    ) -> None:
        """Start with no verdicts; the first ``update()`` classifies every child."""
        self._me = os.getpid()
        self._sids = {os.getsid(0)}
        self._born_after = _boot_ticks() + 1  # the session evidence holds only after this
        self._verdicts: dict[int, Child] = {}
        self._sighted: dict[Key, int] = {}  # process -> its parent then, latest walk
        self._sighted_before: dict[Key, int] = {}  # the walk before
        self._events = events
        self._forks: dict[int, tuple[int, int]] = {}  # pid -> (forker's tgid, start ticks)
        self._dead: dict[int, float] = {}  # pid -> when it exited as another's child
        self._hz = os.sysconf("SC_CLK_TCK")
        self._walk_share = walk_share
        self._max_walk = max_walk
        self._next_walk = 0.0
        self.events_lost = 0  # batches of events the kernel dropped (our buffer was full)
        self.walk_seconds = 0.0  # how long the latest walk took

    def update(self, children: dict[int, int], adopter: int) -> list[Child]:
        """Classify new children and return every current child with its verdict.

        Args:
            children: our children, each mapped to the thread it is filed under.
            adopter: the thread orphans are re-parented to.
        """
        self._sids.add(os.getsid(0))  # at most one change: a session leader cannot setsid again
        self._read_events()
        current: dict[int, Child] = {}
        for pid, tid in children.items():
            # Every pass: a verdict belongs to a process, and the PID may name
            # a newer one since (reaped by its owner, reused by a fork).
            seen = observe(pid)
            if seen is None or seen[0].ppid != self._me:
                continue  # reaped (and maybe reused) since the listing
            fields, ino = seen
            key = (pid, fields.start_ticks, ino)
            known = self._verdicts.get(pid)
            if known is not None and known.key == key and known.verdict.kind != UNKNOWN:
                current[pid] = known
            else:
                current[pid] = Child(key, self._judge(key, tid, adopter, fields))
        self._verdicts = current
        self._maybe_walk(list(children))
        return list(current.values())

    def forget(self, pid: int) -> None:
        """Drop what we know of *pid* (it was reaped)."""
        self._verdicts.pop(pid, None)
        self._forks.pop(pid, None)

    def _judge(self, key: Key, tid: int, adopter: int, fields: StatFields) -> Verdict:
        pid, start, _ = key
        if tid != adopter:
            return Verdict(OWN, f"filed under thread {tid}, which forked it")
        for sighted in (self._sighted, self._sighted_before):
            parent = sighted.get(key)
            if parent is not None:
                return Verdict(ADOPTED, f"seen earlier as a child of PID {parent}")
        if start > self._born_after and fields.sid not in self._sids and fields.sid != pid:
            return Verdict(ADOPTED, f"born in session {fields.sid}, never this process's")
        fork = self._forks.get(pid)
        if fork is not None and abs(fork[1] - start) <= _TICK_SLACK:
            if fork[0] == self._me:
                return Verdict(OWN, "the kernel's fork event names this process")
            return Verdict(ADOPTED, f"the kernel's fork event names PID {fork[0]}")
        return Verdict(UNKNOWN, "no evidence of adoption")

    def _read_events(self) -> None:
        if self._events is None:
            return
        forks, exits, lost = self._events.read()
        self.events_lost += lost
        scale = self._hz / 1e9
        offset = event_boot_offset_ns()  # again each time: a suspend moves it
        for fork in forks:
            if fork.child_pid == fork.child_tgid:  # a process, not a thread
                ticks = int((fork.timestamp_ns + offset) * scale)
                self._forks[fork.child_pid] = (fork.parent_tgid, ticks)
        # A process that exits as another's child may still become ours, as a
        # zombie, when that parent exits too (a subshell's `(exit 5) &`): keep its
        # record a while. Zombies held longer are seen by the descendant walks.
        now = time.monotonic()
        for done in exits:
            if done.pid == done.tgid and done.parent_tgid != self._me:
                self._dead[done.pid] = now
        if self._dead and now - next(iter(self._dead.values())) > _KEEP_DEAD:
            for pid, when in list(self._dead.items()):
                if now - when <= _KEEP_DEAD:
                    break
                del self._dead[pid]
                self._forks.pop(pid, None)
        if len(self._forks) > _MAX_FORKS:
            for pid in list(self._forks)[: len(self._forks) // 2]:
                del self._forks[pid]

    def _maybe_walk(self, roots: list[int]) -> None:
        """Record our descendants' parents, throttled to ``walk_share`` of the time."""
        now = time.monotonic()
        if now < self._next_walk:
            return
        sighted: dict[Key, int] = {}
        stack = roots
        budget = self._max_walk
        while stack and budget > 0:
            parent = stack.pop()
            for pid in children_of(parent):
                budget -= 1
                seen = observe(pid)
                # Only a process whose parent is not us is evidence: a PID reused
                # by our own new child between the listing and this read is not.
                if seen is None or seen[0].ppid == self._me:
                    continue
                sighted[(pid, seen[0].start_ticks, seen[1])] = seen[0].ppid
                stack.append(pid)
        self._sighted_before, self._sighted = self._sighted, sighted
        self.walk_seconds = time.monotonic() - now
        self._next_walk = now + self.walk_seconds / self._walk_share
