"""``undertaker ps --json``: the documented document (docs/json.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from undertaker.cli._exit_json import exit_json
from undertaker.cli._ps_view import live_threads

if TYPE_CHECKING:
    from undertaker.census import Census, ParentGroup
    from undertaker.cli._coverage import Coverage
    from undertaker.proc import Process

JSON_VERSION = 1


def _process_json(proc: Process) -> dict[str, Any]:
    return {
        "pid": proc.pid,
        "ppid": proc.ppid,
        "comm": proc.comm,
        "state": proc.state,
        "uid": proc.uid,
        "threads": proc.threads,
        "live_threads": live_threads(proc),
        "pgid": proc.pgid,
        "sid": proc.sid,
        "start_ticks": proc.start_ticks,
        "started": round(proc.started, 2),
    }


def _parent_json(group: ParentGroup) -> dict[str, Any]:
    return {
        "pid": group.pid,
        "comm": group.process.comm if group.process else None,
        "state": group.process.state if group.process else None,
        "cmdline": group.cmdline,
        "nspid": list(group.nspid) if group.nspid is not None else None,
        "namespace_init": group.is_namespace_init,
        "zombies": len(group.zombies),
        "zombie_pids": sorted(z.process.pid for z in group.zombies),
        "oldest_since": round(group.oldest.since, 3),
        "exit_statuses": dict(group.statuses),
    }


def census_json(
    census: Census,
    coverage: Coverage,
    processes: list[Process] | None = None,
    *,
    min_age: float | None = None,
    younger: int = 0,
) -> dict[str, Any]:
    """The documented ``--json`` document (docs/json.md); keys only ever get added."""
    snap = census.snapshot
    limit = coverage.limit
    doc: dict[str, Any] = {
        "version": JSON_VERSION,
        "taken_at": round(snap.taken_at, 3),
        "source": snap.source,
        "table_age": round(snap.table_age, 3),
        "states": dict(sorted(snap.state_counts.items())),
        "pids": {
            "used": snap.pids_used,
            "max": snap.pid_max,
            "cgroup": (
                dict(zip(("current", "max", "path"), snap.cgroup_pids, strict=True))
                if snap.cgroup_pids
                else None
            ),
            "tasks": coverage.tasks,
            "threads_max": coverage.threads_max,
            "child_namespace": coverage.child_namespace,
            "limit": limit._asdict() if limit is not None else None,
        },
        "unreadable": snap.unreadable,
        "vanished": snap.vanished,
        "hidepid": snap.hidepid,
        "incomplete": coverage.incomplete,
        "min_age": min_age,
        "younger_zombies": younger,
        "zombies": [
            _process_json(z.process)
            | {
                "nspid": list(z.nspid),
                "exit": exit_json(z),
                "exited_at": round(z.exited_at, 3) if z.exited_at is not None else None,
                "exited_at_exact": z.exact,
            }
            for z in census.zombies
        ],
        "parents": [_parent_json(g) for g in census.parents],
        "zombie_leaders": [_process_json(p) for p in census.leaders],
    }
    if processes is not None:
        doc["processes"] = [_process_json(p) for p in processes]
    return doc
