"""Format ``undertaker ps``: a top-like header, zombies by parent, or every process."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from undertaker.cli._style import Style, duration, printable, table

if TYPE_CHECKING:
    from collections.abc import Callable

    from undertaker.census import Census, ParentGroup, Zombie
    from undertaker.proc import Process, Snapshot

JSON_VERSION = 1

# top's grouping of state letters in its "Tasks:" line.
_TOP_GROUPS = {"running": "R", "sleeping": "SDI", "stopped": "Tt", "zombie": "Z"}


def tasks_line(snapshot: Snapshot) -> str:
    """``Tasks: N total, ...`` as top prints it, plus PID-table pressure."""
    counts = snapshot.state_counts
    parts = [f"{len(snapshot.processes)} total"]
    for label, letters in _TOP_GROUPS.items():
        parts.append(f"{sum(counts[c] for c in letters)} {label}")
    # top counts a zombie leader as a zombie; it is alive, so we count it apart.
    leaders = len(snapshot.zombie_leaders)
    parts[-1] = f"{counts['Z'] - leaders} zombie"
    if leaders:
        parts.append(f"{leaders} zombie leader")
    line = "Tasks: " + ", ".join(parts)
    if snapshot.pid_max:
        share = 100.0 * snapshot.pids_used / snapshot.pid_max
        line += f"   PIDs: {snapshot.pids_used}/{snapshot.pid_max} in use ({share:.1f}%)"
    if snapshot.cgroup_pids:
        current, limit, _ = snapshot.cgroup_pids
        # pids.max 0 is how people freeze a fork bomb: say so rather than divide.
        usage = f"{100.0 * current / limit:.1f}%" if limit else "fork blocked"
        line += f"   cgroup pids: {current}/{limit} ({usage})"
    return line


def _caveats(snapshot: Snapshot) -> list[str]:
    notes = []
    if snapshot.unreadable:
        notes.append(
            f"{snapshot.unreadable} processes could not be read "
            "(run as root, or grant CAP_SYS_PTRACE, to see them)"
        )
    if snapshot.hidepid:
        notes.append(f"procfs is mounted hidepid={snapshot.hidepid}: counts are lower bounds")
    return notes


_COMMAND_WIDTH = 72  # the whole command line is in --json; the table stays readable


def _command(group: ParentGroup) -> str:
    if group.cmdline:
        text = printable(" ".join(group.cmdline))
        return text if len(text) <= _COMMAND_WIDTH else text[: _COMMAND_WIDTH - 3] + "..."
    if group.process is not None:
        return f"[{printable(group.process.comm)}]"
    return "(outside this PID namespace)"


def _status_summary(group: ParentGroup) -> str:
    return ", ".join(
        f"{text} x{count}" if count > 1 else text for text, count in group.statuses.most_common()
    )


def render_census(census: Census, style: Style, now: float | None = None) -> str:
    """The default view: header, parents responsible, then each zombie."""
    now = time.time() if now is None else now
    snap = census.snapshot
    out = [style.bold(tasks_line(snap))]
    out += [style.dim("note: " + n) for n in _caveats(snap)]
    zombies = census.zombies
    if not zombies:
        out.append("no zombies")
    else:
        noun = "zombie" if len(zombies) == 1 else "zombies"
        parents = "parent" if len(census.parents) == 1 else "parents"
        out += ["", f"{len(zombies)} {noun} under {len(census.parents)} {parents}:", ""]
        rows = [["PPID", "ZOMBIES", "OLDEST", "EXIT STATUS", "PARENT"]]
        rows += [
            [
                str(g.pid),
                str(len(g.zombies)),
                duration(now - g.oldest.since),
                _status_summary(g),
                _command(g),
            ]
            for g in census.parents
        ]
        lines = table(rows, right=frozenset({0, 1, 2}))
        out += [style.bold(lines[0])] + [style.blame(line) for line in lines[1:]]
        out.append("")
        out += _zombie_table(zombies, style, now)
        out += [
            "",
            style.dim("A zombie is already dead: kill -9 cannot remove it. Its parent must"),
            style.dim("call wait(), or exit so that init adopts and reaps it."),
        ]
    if census.leaders:
        heading = (
            f"{len(census.leaders)} zombie leader(s): alive, main thread exited, "
            "not reapable until the last thread ends:"
        )
        out += ["", heading]
        rows = [["PID", "PPID", "THREADS", "COMM"]]
        rows += [
            [str(p.pid), str(p.ppid), str(p.threads - 1), printable(p.comm)] for p in census.leaders
        ]
        out += [style.leader(line) for line in table(rows, right=frozenset({0, 1, 2}))]
    return "\n".join(out)


def _zombie_table(zombies: list[Zombie], style: Style, now: float) -> list[str]:
    rows = [["PID", "PPID", "NSPID", "DEAD FOR", "EXIT", "COMM"]]
    for z in sorted(zombies, key=lambda z: (z.process.ppid, z.since, z.process.pid)):
        proc = z.process
        nspid = ",".join(map(str, z.nspid[1:])) if len(z.nspid) > 1 else "-"
        dead = duration(now - z.exited_at) if z.exited_at is not None else "?"
        rows.append(
            [
                str(proc.pid),
                str(proc.ppid),
                nspid,
                dead,
                str(z.status) if z.status else "unknown",
                printable(proc.comm),
            ]
        )
    lines = table(rows, right=frozenset({0, 1, 3}))
    return [style.bold(lines[0])] + [style.zombie(line) for line in lines[1:]]


def render_all(snapshot: Snapshot, keep: Callable[[Process], bool], style: Style) -> str:
    """Every process with its state, like ``ps -el``."""
    out = [style.bold(tasks_line(snapshot))]
    out += [style.dim("note: " + n) for n in _caveats(snapshot)]
    rows = [["PID", "PPID", "S", "UID", "THR", "STARTED", "COMM"]]
    kinds = []
    for proc in sorted(snapshot.processes.values()):
        if not keep(proc):
            continue
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(proc.started))
        rows.append(
            [
                str(proc.pid),
                str(proc.ppid),
                proc.state,
                str(proc.uid),
                str(proc.threads),
                started,
                printable(proc.comm),
            ]
        )
        kinds.append("zombie" if proc.is_zombie else "leader" if proc.is_zombie_leader else "")
    lines = table(rows, right=frozenset({0, 1, 3, 4}))
    out.append(style.bold(lines[0]))
    for line, kind in zip(lines[1:], kinds, strict=True):
        out.append(
            style.zombie(line + "  <defunct>")
            if kind == "zombie"
            else style.leader(line + "  <zombie leader>")
            if kind == "leader"
            else line
        )
    return "\n".join(out)


def _process_json(proc: Process) -> dict[str, Any]:
    return {
        "pid": proc.pid,
        "ppid": proc.ppid,
        "comm": proc.comm,
        "state": proc.state,
        "uid": proc.uid,
        "threads": proc.threads,
        "pgid": proc.pgid,
        "sid": proc.sid,
        "start_ticks": proc.start_ticks,
        "started": round(proc.started, 2),
    }


def _exit_json(zombie: Zombie) -> dict[str, Any] | None:
    status = zombie.status
    if status is None:
        return None
    return {
        "raw": status.raw,
        "code": status.exit_code,
        "signal": status.term_signal,
        "core_dumped": status.core_dumped,
        "shell_code": status.shell_code,
        "text": str(status),
    }


def census_json(census: Census, processes: list[Process] | None = None) -> dict[str, Any]:
    """The documented ``--json`` document (docs/json.md); keys only ever get added."""
    snap = census.snapshot
    doc: dict[str, Any] = {
        "version": JSON_VERSION,
        "taken_at": round(snap.taken_at, 3),
        "states": dict(sorted(snap.state_counts.items())),
        "pids": {
            "used": snap.pids_used,
            "max": snap.pid_max,
            "cgroup": (
                dict(zip(("current", "max", "path"), snap.cgroup_pids, strict=True))
                if snap.cgroup_pids
                else None
            ),
        },
        "unreadable": snap.unreadable,
        "vanished": snap.vanished,
        "hidepid": snap.hidepid,
        "zombies": [
            _process_json(z.process)
            | {
                "nspid": list(z.nspid),
                "exit": _exit_json(z),
                "exited_at": round(z.exited_at, 3) if z.exited_at is not None else None,
            }
            for z in census.zombies
        ],
        "parents": [
            {
                "pid": g.pid,
                "comm": g.process.comm if g.process else None,
                "state": g.process.state if g.process else None,
                "cmdline": g.cmdline,
                "zombies": len(g.zombies),
                "zombie_pids": sorted(z.process.pid for z in g.zombies),
                "oldest_since": round(g.oldest.since, 3),
                "exit_statuses": dict(g.statuses),
            }
            for g in census.parents
        ],
        "zombie_leaders": [_process_json(p) for p in census.leaders],
    }
    if processes is not None:
        doc["processes"] = [_process_json(p) for p in processes]
    return doc
