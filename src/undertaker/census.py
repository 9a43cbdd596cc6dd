"""Who is responsible for each zombie: the census behind ``undertaker ps``.

Takes a :class:`~undertaker.proc.Snapshot`, keeps the zombies a filter
selects, groups them by the parent that has to reap them, and reads the few
slow facts (parent command line, exit-time estimate) only for those.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.proc import (
    Process,
    Snapshot,
    ZombieReader,
    is_same_process,
    read_cmdline,
)
from undertaker.wait import WaitStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Collection


class Zombie(NamedTuple):
    """A zombie with its decoded exit status and estimated time of death."""

    process: Process
    status: WaitStatus | None  # None when the kernel would not tell us
    exited_at: float | None  # seconds since the epoch, estimated; None if unknown
    nspid: tuple[int, ...]  # PID in each nested namespace, outermost first

    @property
    def since(self) -> float:
        """When it died if known, else when it started (an upper bound on its age)."""
        return self.exited_at if self.exited_at is not None else self.process.started


class ParentGroup(NamedTuple):
    """The zombies one parent has not reaped."""

    pid: int
    process: Process | None  # None when the parent is outside our view (ppid 0)
    cmdline: list[str] | None  # None for kernel threads, zombies, or when hidden
    zombies: list[Zombie]

    @property
    def oldest(self) -> Zombie:
        """The zombie that has waited longest."""
        return min(self.zombies, key=lambda z: z.since)

    @property
    def statuses(self) -> Counter[str]:
        """How many zombies ended each way (``exited 7``: 2)."""
        return Counter(str(z.status) if z.status else "unknown" for z in self.zombies)


class Census(NamedTuple):
    """Zombies grouped by parent, plus the live zombie leaders."""

    snapshot: Snapshot
    zombies: list[Zombie]
    parents: list[ParentGroup]  # most zombies first
    leaders: list[Process]


def selector(
    pids: Collection[int] = (),
    ppids: Collection[int] = (),
    uids: Collection[int] = (),
) -> Callable[[Process], bool]:
    """Build a filter that keeps processes matching every non-empty criterion.

    Filtering by *uids* needs a scan with ``owners=True``.
    """

    def keep(proc: Process) -> bool:
        return (
            (not pids or proc.pid in pids)
            and (not ppids or proc.ppid in ppids)
            and (not uids or proc.uid in uids)
        )

    return keep


def take_census(
    snapshot: Snapshot,
    keep: Callable[[Process], bool] | None = None,
    *,
    ages: bool = True,
) -> Census:
    """Group the snapshot's zombies by parent.

    Args:
        snapshot: a scan of the process table.
        keep: which zombies (and zombie leaders) to include; all by default.
        ages: estimate each zombie's time of death (one small read per zombie).

    Returns:
        The census. Parents are ordered by zombie count, then by PID.
    """
    root = snapshot.root
    zombies = []
    reader = ZombieReader(snapshot, ages=ages)
    for proc in snapshot.zombies:
        if keep is not None and not keep(proc):
            continue
        status = WaitStatus(proc.exit_code & 0xFFFF) if proc.exit_code is not None else None
        # Reads after the scan must still be about the same process: a zombie
        # reaped since then may have had its PID reused. The reader checks.
        read = reader.read(proc)
        if read is None:
            continue  # reaped since the scan: no longer a zombie
        nspid, exited_at = read
        zombies.append(Zombie(proc, status, exited_at, nspid))
    by_parent: dict[int, list[Zombie]] = {}
    for zombie in zombies:
        by_parent.setdefault(zombie.process.ppid, []).append(zombie)
    parents = []
    for ppid, group in by_parent.items():
        parent = snapshot.processes.get(ppid)
        cmdline = None
        if parent is not None:
            try:
                cmdline = read_cmdline(ppid, root)
            except (NoSuchProcess, AccessDenied):
                cmdline = None  # parent exited since the scan, or hidepid
            if cmdline is not None and not is_same_process(ppid, parent.start_ticks, root):
                cmdline = None  # another process now holds the PID: not our parent's
        parents.append(ParentGroup(ppid, parent, cmdline, group))
    parents.sort(key=lambda g: (-len(g.zombies), g.pid))
    leaders = [p for p in snapshot.zombie_leaders if keep is None or keep(p)]
    return Census(snapshot, zombies, parents, leaders)


def zombie_ancestry(snapshot: Snapshot) -> set[int]:
    """Return the PIDs of every zombie or zombie leader and of all their ancestors."""
    marked: set[int] = set()
    table = snapshot.processes
    for proc in snapshot.processes.values():
        if proc.state != "Z":
            continue
        pid: int | None = proc.pid
        while pid is not None and pid not in marked:
            marked.add(pid)
            parent = table.get(pid)
            pid = parent.ppid if parent is not None and parent.ppid != pid else None
    return marked
