"""Who is responsible for each zombie: the census behind ``undertaker ps``.

Takes a :class:`~undertaker.proc.Snapshot`, keeps the zombies a filter
selects, groups them by the parent that has to reap them, and reads the few
slow facts (parent command line, exit-time estimate) only for those.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

from undertaker._errors import AccessDenied, NoSuchProcess, ProcUnavailable
from undertaker.proc import (
    Process,
    Snapshot,
    ZombieReader,
    is_same_process,
    read_cmdline,
    read_nspid,
)
from undertaker.wait import WaitStatus, has_cap_sys_ptrace, zombie_status

if TYPE_CHECKING:
    from collections.abc import Callable, Collection


class Zombie(NamedTuple):
    """A zombie with its decoded exit status and time of death."""

    process: Process
    status: WaitStatus | None  # None when the kernel would not tell us
    exited_at: float | None  # seconds since the epoch; None if unknown
    nspid: tuple[int, ...]  # PID in each nested namespace, outermost first
    # exited_at is the kernel's EXIT event time (an EventTable listened when it
    # died), not the estimate from the scheduler clock
    exact: bool = False

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
    nspid: tuple[int, ...] | None = None  # the parent's PID in each namespace, if read

    @property
    def is_namespace_init(self) -> bool:
        """Whether the parent is PID 1 of its PID namespace (a container's init).

        Nothing adopts the zombies of a namespace's PID 1 when it does not
        reap: "exit so that init adopts them" is no advice for it.
        """
        return self.nspid is not None and self.nspid[-1] == 1

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


def kept_status(proc: Process, root: str, privileged: bool) -> WaitStatus | None:
    """The exit status zombie *proc* keeps, or None when the kernel hides it.

    The scan only compares uids, so a 0 may be the kernel's stand-in for a
    hidden code (a setgid program, a process that changed ids): without
    CAP_SYS_PTRACE (*privileged*) a 0 is checked again by
    :func:`~undertaker.wait.zombie_status`.

    Raises:
        NoSuchProcess: the zombie was reaped since the scan.
    """
    if proc.exit_code is None:
        return None
    status = WaitStatus(proc.exit_code & 0xFFFF)
    if status != 0 or privileged:
        return status  # a hidden code is always written as 0
    try:
        return zombie_status(proc.pid, root)
    except (AccessDenied, ProcUnavailable):
        return None


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
        ages: estimate each zombie's time of death (one small read per zombie);
            exact times the snapshot carries (``exit_times``) are used either way.

    Returns:
        The census. Parents are ordered by zombie count, then by PID.
    """
    root = snapshot.root
    zombies = []
    reader = ZombieReader(snapshot, ages=ages)
    privileged = has_cap_sys_ptrace() if snapshot.zombies else True
    for proc in snapshot.zombies:
        if keep is not None and not keep(proc):
            continue
        try:
            status = kept_status(proc, root, privileged)
        except NoSuchProcess:
            continue  # reaped since the scan
        # Reads after the scan must still be about the same process: a zombie
        # reaped since then may have had its PID reused. The reader checks.
        read = reader.read(proc)
        if read is None:
            continue  # reaped since the scan: no longer a zombie
        nspid, exited_at = read
        exact = exited_at is not None and proc.pid in snapshot.exit_times
        zombies.append(Zombie(proc, status, exited_at, nspid, exact))
    by_parent: dict[int, list[Zombie]] = {}
    for zombie in zombies:
        by_parent.setdefault(zombie.process.ppid, []).append(zombie)
    parents = []
    for ppid, group in by_parent.items():
        parent = snapshot.processes.get(ppid)
        cmdline: list[str] | None = None
        parent_nspid: tuple[int, ...] | None = None
        if parent is not None:
            try:
                parent_nspid = read_nspid(ppid, root)
                cmdline = read_cmdline(ppid, root)
            except (NoSuchProcess, AccessDenied):
                pass  # parent exited since the scan, or hidepid
            if parent_nspid is not None and not is_same_process(ppid, parent.start_ticks, root):
                cmdline = parent_nspid = None  # another process holds the PID: not our parent's
        parents.append(ParentGroup(ppid, parent, cmdline, group, parent_nspid))
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
