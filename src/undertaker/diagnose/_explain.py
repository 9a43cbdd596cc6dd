"""Explain the zombies of a snapshot: pick the parents asked about, gather, diagnose.

The entry point of the diagnosis layer: :func:`explain` takes a scan and
the PIDs a user named (a zombie, a zombie leader or a parent; none means
every zombie) and returns one report per responsible parent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from undertaker._errors import NoSuchProcess, UndertakerError
from undertaker.census import take_census
from undertaker.diagnose._evidence import Evidence, gather
from undertaker.diagnose._verdict import Diagnosis, diagnose, leader_diagnosis
from undertaker.proc import read_status, scan

if TYPE_CHECKING:
    from collections.abc import Collection

    from undertaker.census import Census
    from undertaker.proc import Process, Snapshot


class NothingToExplain(UndertakerError):
    """A PID asked about is neither a zombie, a zombie leader, nor anyone's parent."""

    def __init__(self, pid: int, state: str) -> None:
        """Record the PID and the state it was seen in."""
        super().__init__(f"pid {pid} is not a zombie (state {state}) and has no children")
        self.pid = pid


class Growth(NamedTuple):
    """How a parent's zombie count changed over ``--watch SECONDS``."""

    seconds: float
    before: int
    after: int  # 0 also when the parent went away
    gone: bool = False  # the parent exited (or its PID was reused) during the watch
    remaining: int = 0  # when gone: how many of its zombies are still unreaped elsewhere


class ParentReport(NamedTuple):
    """One responsible parent: what was read, and what it means."""

    evidence: Evidence
    diagnosis: Diagnosis
    growth: Growth | None = None


class LeaderReport(NamedTuple):
    """A zombie leader: alive, so it gets its own verdict."""

    process: Process
    live_threads: int
    diagnosis: Diagnosis


class Explanation(NamedTuple):
    """The whole answer: parents most zombies first, leaders, and notes on quiet PIDs."""

    census: Census
    parents: list[ParentReport]
    leaders: list[LeaderReport]
    quiet: list[str]  # asked-about parents that hold no zombies


def _thread_group(snapshot: Snapshot, pid: int) -> int:
    """The process *pid* belongs to: itself, or for a thread ID its thread group leader.

    A thread is not listed in ``/proc`` but its ``/proc/TID`` answers.
    """
    if pid in snapshot.processes:
        return pid
    try:
        tgid = read_status(pid, snapshot.root).tgid
    except UndertakerError:  # gone, hidden: the caller says so
        return pid
    return tgid if tgid in snapshot.processes else pid


def _select(snapshot: Snapshot, pids: Collection[int]) -> tuple[set[int], set[int], list[str]]:
    """Sort the asked PIDs into parents to explain, zombie leaders, and quiet parents.

    Raises:
        NoSuchProcess: a PID does not exist.
        NothingToExplain: a PID is not a zombie and has no children.
    """
    parents: set[int] = set()
    leaders: set[int] = set()
    quiet = []
    for asked in dict.fromkeys(pids):  # each once, in the order asked
        pid = _thread_group(snapshot, asked)
        if pid != asked:
            quiet.append(f"pid {asked} is a thread of process {pid}")
        proc = snapshot.processes.get(pid)
        if proc is None:
            raise NoSuchProcess(asked)
        kids = snapshot.children(pid)
        if proc.is_zombie:
            parents.add(proc.ppid)
        elif proc.is_zombie_leader:
            leaders.add(pid)
        if any(k.is_zombie for k in kids):
            parents.add(pid)
        elif kids and not proc.is_zombie_leader:
            quiet.append(f"pid {pid} ({proc.comm}) holds no zombies among its {len(kids)} children")
        elif not proc.is_zombie and not proc.is_zombie_leader:
            raise NothingToExplain(pid, proc.state)
    return parents, leaders, quiet


def explain(snapshot: Snapshot, pids: Collection[int] = ()) -> Explanation:
    """Diagnose every parent responsible for a zombie among *pids* (all zombies if empty).

    Raises:
        NoSuchProcess: a PID in *pids* does not exist.
        NothingToExplain: a PID in *pids* is neither a zombie, a zombie leader
            nor a parent.
    """
    if pids:
        wanted, leader_pids, quiet = _select(snapshot, pids)
        census = take_census(snapshot, lambda p: p.ppid in wanted or p.pid in leader_pids)
    else:
        census = take_census(snapshot)
        quiet = []
    root = snapshot.root
    parents = []
    for group in census.parents:
        evidence = gather(group, root)
        parents.append(ParentReport(evidence, diagnose(evidence)))
    leaders = [
        LeaderReport(p, p.threads - 1, leader_diagnosis(p.pid, p.threads - 1))
        for p in census.leaders
    ]
    return Explanation(census, parents, leaders, quiet)


def watch(first: Explanation, seconds: float, root: str = "/proc") -> Explanation:
    """Sample each parent's zombie count again after *seconds*; attach the growth.

    A parent is followed by identity (PID and start time), so a PID reused
    meanwhile counts as gone, never as the same parent. A gone parent's
    zombies may live on, adopted by a subreaper that does not reap either:
    ``remaining`` counts them (each also followed by identity).
    """
    time.sleep(seconds)
    later = scan(root, owners=False)
    reports = []
    for report in first.parents:
        ev = report.evidence
        proc = later.processes.get(ev.pid)
        same = proc is not None and proc.start_ticks == ev.start_ticks and not proc.is_zombie
        after = sum(1 for k in later.children(ev.pid) if k.is_zombie) if same else 0
        remaining = 0
        if not same:
            for zombie in ev.zombies:
                now = later.processes.get(zombie.process.pid)
                if now is not None and now.start_ticks == zombie.process.start_ticks:
                    remaining += now.is_zombie
        growth = Growth(seconds, len(ev.zombies), after, gone=not same, remaining=remaining)
        reports.append(report._replace(growth=growth))
    return first._replace(parents=reports)
