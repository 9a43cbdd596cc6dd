"""One scrape's numbers, from a snapshot (no HTTP, no ``prometheus_client``).

Counts come from the scan itself, as the table was when it was read; the
few reads after it are one ``cgroup`` file per parent holding zombies and the
time of death of each zombie not seen before (:mod:`._deaths`). The page's
census reads more (command lines, exit statuses) and is taken only for it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from undertaker._errors import NoSuchProcess
from undertaker.cli._coverage import assess
from undertaker.diagnose._container import container_of
from undertaker.exporter._deaths import DeathTimes
from undertaker.proc._detail import read_cgroup

if TYPE_CHECKING:
    from undertaker.proc import Snapshot

# Every state letter Linux reports in /proc/PID/stat (fs/proc/array.c):
# each gets a series, 0 included, so queries and alerts never meet an absent one.
STATE_LETTERS = ("R", "S", "D", "T", "t", "X", "Z", "P", "I")
OTHER = "other"  # the label value that sums everything past the top N
NO_CONTAINER = "none"  # a parent in no container we can name (the host, a bare namespace)
UNKNOWN = "unknown"  # the parent is hidden from us or exited during the scrape

ContainerKey = tuple[str, str, str]  # (container_id, runtime, pod_uid)
_Label = TypeVar("_Label", str, ContainerKey)


class Reading(NamedTuple):
    """What one scrape saw; counts of processes, not threads, unless named otherwise."""

    taken_at: float  # when the table was read (seconds since the epoch)
    zombies: int  # true zombies when the table was read: a live zombie leader is never one
    leaders: int  # live processes whose leader thread shows Z
    by_parent: list[tuple[str, int]]  # (parent command, zombies), top N then "other"
    by_container: list[tuple[ContainerKey, int]]  # by the parent's container, same bound
    states: dict[str, int]  # every letter of STATE_LETTERS, and any other seen
    pids_used: int  # PIDs in use (threads and zombies); the kernel's count under hidepid
    pid_max: int | None
    cgroup_pids: tuple[int, int] | None  # (current, limit) of the tightest pids cgroup
    threads: int  # live threads we saw
    threads_max: int | None
    kernel_tasks: int | None  # the kernel's task count (/proc/loadavg), system-wide
    oldest_zombie_age: float  # seconds; 0 when there is no zombie
    oldest_zombie_exact: bool  # that age is from the kernel's exit event, not an estimate
    vanished: int  # processes that exited between listing and reading (skipped)
    unreadable: int  # processes we may not read (hidepid, other users)
    tasks_unseen: int | None  # tasks the kernel counts that the scan did not see
    complete: bool  # the view is complete: every process could be read
    full_scan_age: float  # seconds since the table last agreed with a full scan (0: a scan)


def bounded(counts: Counter[_Label], top: int, other: _Label) -> list[tuple[_Label, int]]:
    """The *top* largest counts (ties by label), then *other* with the rest (0 if none)."""
    ranked: list[tuple[_Label, int]] = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = ranked[:top]
    kept.append((other, sum(count for _, count in ranked[top:])))
    return kept


def _container_label(ppid: int, root: str) -> ContainerKey:
    try:
        paths = read_cgroup(ppid, root) if ppid > 0 else None
    except NoSuchProcess:
        paths = None
    if paths is None:
        return (UNKNOWN, "", "")
    found = container_of(paths)
    if found is None:
        return (NO_CONTAINER, "", "")
    name = found.id[:12] if found.id else f"pod {found.pod_uid}"
    return (name, found.runtime, found.pod_uid or "")


def read_table(
    snapshot: Snapshot, top: int = 10, now: float | None = None, deaths: DeathTimes | None = None
) -> Reading:
    """Count what the metrics export from *snapshot*.

    Args:
        snapshot: the process table of this scrape.
        top: how many parents and containers get their own label value.
        now: the time ages are measured to (default: the clock now).
        deaths: times of death remembered from earlier scrapes of the same
            procfs (updated here); None estimates every zombie's afresh.
    """
    deaths = deaths or DeathTimes()
    died = deaths.oldest(snapshot)
    now = time.time() if now is None else now
    by_parent: Counter[str] = Counter()
    by_ppid: Counter[int] = Counter()
    table = snapshot.processes
    for zombie in snapshot.zombies:
        parent = table.get(zombie.ppid)
        by_parent[parent.comm if parent is not None else UNKNOWN] += 1
        by_ppid[zombie.ppid] += 1
    by_container: Counter[ContainerKey] = Counter()
    for ppid, count in by_ppid.items():  # one cgroup read per parent
        by_container[_container_label(ppid, snapshot.root)] += count
    states = dict.fromkeys(STATE_LETTERS, 0)
    states.update(snapshot.state_counts)
    coverage = assess(snapshot)
    pids_used = coverage.pid_limit.used if coverage.pid_limit is not None else snapshot.pids_used
    unseen = None
    if coverage.tasks is not None and coverage.child_namespace is False:
        # Both count initial-namespace tasks. With nothing hidden, a difference is
        # only tasks born since the scan (the kernel's count is read after it).
        gap = max(coverage.tasks - snapshot.pids_used, 0)
        unseen = gap if coverage.incomplete else 0
    cgroup = snapshot.cgroup_pids
    return Reading(
        taken_at=snapshot.taken_at,
        zombies=len(snapshot.zombies),
        leaders=len(snapshot.zombie_leaders),
        by_parent=bounded(by_parent, top, OTHER),
        by_container=bounded(by_container, top, (OTHER, "", "")),
        states=states,
        pids_used=pids_used,
        pid_max=snapshot.pid_max,
        cgroup_pids=(cgroup[0], cgroup[1]) if cgroup is not None else None,
        threads=sum(p.threads for p in table.values() if not p.is_zombie),
        threads_max=coverage.threads_max,
        kernel_tasks=coverage.tasks,
        oldest_zombie_age=max(now - died, 0.0) if died is not None else 0.0,
        oldest_zombie_exact=died is not None and deaths.oldest_exact,
        vanished=snapshot.vanished,
        unreadable=snapshot.unreadable,
        tasks_unseen=unseen,
        complete=not coverage.incomplete,
        full_scan_age=snapshot.table_age,
    )
