"""Zombies' times of death, remembered from one scrape to the next.

A zombie's time of death never changes, and zombies worth alerting on live
through many scrapes, so each is estimated once (``sched`` and ``stat``:
:meth:`~undertaker.proc.ExitClock.exit_time`, which checks the start time)
and remembered under its identity: PID, start time and the inode of the
``stat`` file the scan read. At 1,000 zombies this saves two reads per
zombie per scrape, a fifth of a 10,000-process scrape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from undertaker._errors import NoSuchProcess
from undertaker.proc import ExitClock

if TYPE_CHECKING:
    from undertaker.proc import Process, Snapshot

_Identity = tuple[int, int, int]  # pid, start ticks, stat inode (0 when unknown)


class DeathTimes:
    """Estimated times of death of the zombies of successive snapshots of one procfs."""

    def __init__(self) -> None:
        """Start with nothing known."""
        self._known: dict[_Identity, float | None] = {}
        self.oldest_exact = False  # the last oldest() is the kernel's exit time

    def oldest(self, snapshot: Snapshot) -> float | None:
        """When the longest-dead zombie of *snapshot* died (seconds since the epoch).

        None without zombies. A zombie whose time of death is unknown (no
        ``sched`` file) counts from its start, an upper bound on its age; one
        reaped before its first read (or whose PID was reused) is left out.
        An event-fed snapshot brings its own: the kernel's exit time
        (``exit_times``, exact, and then ``oldest_exact`` is set) or the
        table's estimate (``zombie_reads``).
        """
        clock: ExitClock | None = None  # calibrated only if a new zombie needs it
        known: dict[_Identity, float | None] = {}
        oldest: float | None = None
        self.oldest_exact = False
        for proc in snapshot.zombies:
            ident = self._identity(proc, snapshot)
            exact = snapshot.exit_times.get(proc.pid)
            read = snapshot.zombie_reads.get(proc.pid)
            died: float | None
            if exact is not None:
                died = exact
            elif read is not None:
                died = read[1]
            elif ident in self._known:
                died = self._known[ident]
            else:
                clock = clock or ExitClock(snapshot.root)
                try:
                    died = clock.exit_time(proc.pid, proc.start_ticks)
                except NoSuchProcess:
                    continue  # reaped (or the PID reused) since the scan
            known[ident] = died
            since = died if died is not None else proc.started
            if oldest is None or since < oldest:
                oldest, self.oldest_exact = since, exact is not None
        self._known = known  # forget the zombies that were reaped
        return oldest

    @staticmethod
    def _identity(proc: Process, snapshot: Snapshot) -> _Identity:
        key = snapshot.zombie_keys.get(proc.pid)
        return (proc.pid, proc.start_ticks, key.stat_inode if key is not None else 0)
