"""Where a scrape's process table comes from: the plug-in point for table sources.

A table source is any callable returning a :class:`~undertaker.proc.Snapshot`
with a ``name`` attribute. The collector calls it once per scrape and
exports the name (``undertaker_table_source_info``) and how old the table is
(``undertaker_table_age_seconds``: now minus ``Snapshot.taken_at``). A source
kept current by kernel events rather than rescans returns its latest table
here; its age then says how fresh it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from undertaker.proc import EventTable, HeldStatFiles, scan

if TYPE_CHECKING:
    from undertaker.proc import EventCounts, Snapshot


class TableSource(Protocol):
    """Anything that yields the current process table, with a name for the metrics."""

    name: str

    def __call__(self) -> Snapshot:
        """Return the process table as it is now (or as fresh as the source keeps it).

        Raises:
            ProcUnavailable: the table cannot be read at all.
        """
        ...


class ScanSource:
    """The default source: one full scan of a procfs per call.

    With *hold_files* the ``stat`` files stay open between calls and are
    re-read in place (:class:`~undertaker.proc.HeldStatFiles`): a scrape then
    skips an open and a close per process, about a third of its cost. Calls
    must not overlap (the collector serialises them).
    """

    name = "scan"

    def __init__(self, root: str = "/proc", *, hold_files: bool = False) -> None:
        """Read the procfs mounted at *root* (a container's view, or the host's)."""
        self.root = root
        self.held = HeldStatFiles(root) if hold_files else None

    def __call__(self) -> Snapshot:
        """Scan once; owners are not read, no metric needs them."""
        return scan(self.root, owners=False, held=self.held)

    def close(self) -> None:
        """Close the held files, if any."""
        if self.held is not None:
            self.held.close()


class EventSource:
    """A table kept current by the kernel's process events (``--events``, issue 11).

    One full scan, then each call reads only what events named since the
    last (:class:`~undertaker.proc.EventTable`): a scrape costs what changed,
    and zombies that die while the exporter runs have exact ages. Where
    events cannot be used (a container, not root) ``fallback`` says why and
    each call scans; ``name`` is then ``scan``. Close it, or the kernel keeps
    generating events for every fork and exit until reboot.
    """

    def __init__(self, root: str = "/proc", *, resync: float) -> None:
        """Subscribe and scan once; reconcile with a full scan every *resync* seconds."""
        self.table = EventTable(root, resync=resync)
        self.name = self.table.source
        self.fallback = self.table.fallback

    @property
    def counts(self) -> EventCounts:
        """What the table has seen and done: events, overflows, full scans, corrections."""
        return self.table.counts

    def __call__(self) -> Snapshot:
        """The table now (events applied, zombies checked)."""
        return self.table.snapshot()

    def close(self) -> None:
        """Unsubscribe from the kernel's events."""
        self.table.close()
