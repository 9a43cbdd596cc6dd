"""One scrape's numbers, from a snapshot and its census (pure: no HTTP, no client).

Everything the metrics and the page show is computed here, once per scrape,
so the two cannot disagree and the numbers are testable without
``prometheus_client``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from undertaker._errors import NoSuchProcess
from undertaker.census import Census, take_census
from undertaker.cli._coverage import assess
from undertaker.diagnose._container import container_of
from undertaker.proc._detail import read_cgroup

if TYPE_CHECKING:
    from undertaker.proc import Snapshot

# Every state letter Linux reports in /proc/PID/stat (fs/proc/array.c):
# each gets a series, 0 included, so queries and alerts never meet an absent one.
STATE_LETTERS = ("R", "S", "D", "T", "t", "X", "Z", "P", "I")
OTHER = "other"  # the label value that sums everything past the top N
NO_CONTAINER = "none"  # a parent in no container we can name (the host, a bare namespace)
UNKNOWN = "unknown"  # the parent is hidden from us or exited during the scrape

ContainerKey = tuple[str, str, str]  # (container, runtime, pod)
_Label = TypeVar("_Label", str, ContainerKey)


class Reading(NamedTuple):
    """What one scrape saw; counts of processes, not threads, unless named otherwise."""

    taken_at: float  # when the table was read (seconds since the epoch)
    census: Census
    zombies: int  # true zombies: a live zombie leader is never one
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
    vanished: int  # processes that exited between listing and reading (skipped)
    unreadable: int  # processes we may not read (hidepid, other users)
    tasks_unseen: int | None  # tasks the kernel counts that the scan did not see
    complete: bool  # the view is complete: every process could be read


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


def read_table(snapshot: Snapshot, top: int = 10, now: float | None = None) -> Reading:
    """Take the census of *snapshot* and count what the metrics export.

    Args:
        snapshot: the process table of this scrape.
        top: how many parents and containers get their own label value.
        now: the time ages are measured to (default: the clock now).
    """
    census = take_census(snapshot)
    now = time.time() if now is None else now
    by_parent: Counter[str] = Counter()
    by_container: Counter[ContainerKey] = Counter()
    for group in census.parents:
        name = group.process.comm if group.process is not None else UNKNOWN
        by_parent[name] += len(group.zombies)
        by_container[_container_label(group.pid, snapshot.root)] += len(group.zombies)
    states = dict.fromkeys(STATE_LETTERS, 0)
    states.update(snapshot.state_counts)
    coverage = assess(snapshot)
    pids_used = coverage.pid_limit.used if coverage.pid_limit is not None else snapshot.pids_used
    unseen = None
    if coverage.tasks is not None and coverage.child_namespace is False:
        unseen = max(coverage.tasks - snapshot.pids_used, 0)  # both count initial-namespace tasks
    cgroup = snapshot.cgroup_pids
    ages = [now - zombie.since for zombie in census.zombies]
    return Reading(
        taken_at=snapshot.taken_at,
        census=census,
        zombies=len(census.zombies),
        leaders=len(census.leaders),
        by_parent=bounded(by_parent, top, OTHER),
        by_container=bounded(by_container, top, (OTHER, "", "")),
        states=states,
        pids_used=pids_used,
        pid_max=snapshot.pid_max,
        cgroup_pids=(cgroup[0], cgroup[1]) if cgroup is not None else None,
        threads=sum(p.threads for p in snapshot.processes.values() if not p.is_zombie),
        threads_max=coverage.threads_max,
        kernel_tasks=coverage.tasks,
        oldest_zombie_age=max(max(ages, default=0.0), 0.0),
        # Zombies reaped between the scan and the census were skipped too.
        vanished=snapshot.vanished + len(snapshot.zombies) - len(census.zombies),
        unreadable=snapshot.unreadable,
        tasks_unseen=unseen,
        complete=not coverage.incomplete,
    )
