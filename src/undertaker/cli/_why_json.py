"""``undertaker why --json``: the documented document (docs/json.md, ``why`` section)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from undertaker.cli._exit_json import exit_json
from undertaker.diagnose import mask_names, sigchld_disposition

if TYPE_CHECKING:
    from undertaker.diagnose import Diagnosis, Evidence, Explanation, LeaderReport, ParentReport

WHY_JSON_VERSION = 1


def _masks(mask: int) -> dict[str, Any]:
    return {"hex": f"{mask:016x}", "names": mask_names(mask)}


def _diagnosis_json(diag: Diagnosis) -> dict[str, Any]:
    return {
        "verdict": diag.verdict,
        "reason": diag.reason,
        "fixes": [fix._asdict() for fix in diag.fixes],
    }


def _evidence_json(ev: Evidence) -> dict[str, Any]:
    status = ev.status
    container = ev.container
    syscall = ev.syscall
    return {
        "pid": ev.pid,
        "gone": ev.gone,
        "comm": status.name if status else None,
        "cmdline": ev.cmdline,
        "state": status.state if status else None,
        "start_ticks": ev.start_ticks,
        "threads": status.threads if status else None,
        "live_threads": ev.live_threads,
        "nspid": list(ev.nspid),
        "namespace_init": ev.is_namespace_init,
        "sigchld": {
            "disposition": sigchld_disposition(status.sig_ign, status.sig_cgt),
            "blocked_threads": ev.blocked_threads,
            "pending": ev.sigchld_pending,
        }
        if status
        else None,
        "signals": {
            "caught": _masks(status.sig_cgt),
            "ignored": _masks(status.sig_ign),
            "blocked": _masks(status.sig_blk),
            "pending": _masks(status.sig_pnd | status.shd_pnd),
        }
        if status
        else None,
        "tracer": {"pid": status.tracer_pid, "comm": ev.tracer_comm}
        if status and status.tracer_pid
        else None,
        "wchan": ev.wchan,
        "syscall": {
            "number": syscall.number,
            "name": ev.syscall_name,
            "running": syscall.running,
            "args": list(syscall.args),
        }
        if syscall is not None
        else None,
        "seccomp": status.seccomp if status else None,
        "cgroups": ev.cgroups,
        "container": container._asdict() if container is not None else None,
        "reaped_before": ev.reaped_before,
        "runtime": ev.runtime,
        "forked_without_exec": ev.forked_without_exec,
        "adopted": ev.adopted,
        "frozen": ev.frozen,
        "unreadable": ev.unreadable,
    }


def _zombie_json(ev: Evidence) -> list[dict[str, Any]]:
    return [
        {
            "pid": z.process.pid,
            "comm": z.process.comm,
            "nspid": list(z.nspid),
            "exit": exit_json(z),
            "exited_at": round(z.exited_at, 3) if z.exited_at is not None else None,
            "exited_at_exact": z.exact,
            "since": round(z.since, 3),
        }
        for z in ev.zombies
    ]


def _parent_json(report: ParentReport) -> dict[str, Any]:
    ev = report.evidence
    growth = report.growth
    return (
        _evidence_json(ev)
        | {"zombies": _zombie_json(ev)}
        | _diagnosis_json(report.diagnosis)
        | {"growth": growth._asdict() if growth is not None else None}
    )


def _leader_json(report: LeaderReport) -> dict[str, Any]:
    proc = report.process
    return {
        "pid": proc.pid,
        "comm": proc.comm,
        "ppid": proc.ppid,
        "live_threads": report.live_threads,
    } | _diagnosis_json(report.diagnosis)


def explanation_json(found: Explanation) -> dict[str, Any]:
    """The documented ``why --json`` document; keys only ever get added."""
    snap = found.census.snapshot
    return {
        "version": WHY_JSON_VERSION,
        "taken_at": round(snap.taken_at, 3),
        "source": snap.source,
        "parents": [_parent_json(r) for r in found.parents],
        "zombie_leaders": [_leader_json(r) for r in found.leaders],
        "quiet": found.quiet,
        "unreadable": snap.unreadable,
    }
