"""Format ``undertaker ps``: a top-like header, zombies by parent, or every process."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from undertaker.cli._style import (
    Style,
    duration,
    pid_span,
    plural,
    printable,
    table,
    terminal_columns,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from undertaker.census import Census, ParentGroup, Zombie
    from undertaker.cli._coverage import Coverage
    from undertaker.proc import Process, Snapshot

# top's grouping of state letters in its "Tasks:" line.
_TOP_GROUPS = {"running": "R", "sleeping": "SDI", "stopped": "Tt", "zombie": "Z"}


def tasks_line(snapshot: Snapshot, coverage: Coverage) -> str:
    """``Tasks: N total, ...`` as top prints it, plus the closest PID limit."""
    counts = snapshot.state_counts
    parts = [f"{len(snapshot.processes)} total"]
    for label, letters in _TOP_GROUPS.items():
        parts.append(f"{sum(counts[c] for c in letters)} {label}")
    # top counts a zombie leader as a zombie; it is alive, so we count it apart.
    leaders = len(snapshot.zombie_leaders)
    parts[-1] = f"{counts['Z'] - leaders} zombie"
    if leaders:
        parts.append(f"{leaders} zombie {plural(leaders, 'leader')}")
    line = "Tasks: " + ", ".join(parts)
    limit = coverage.limit
    if limit is not None:
        share = 100.0 * limit.used / limit.max
        bound = ">=" if coverage.incomplete and limit.used_from == "scan" else ""
        name = limit.name
        if limit.scope == "namespace":
            name = "this PID namespace's " + name
        elif limit.name == "threads-max":
            name += ", system-wide"
        if limit.used_from == "loadavg" and limit.name == "pid_max":
            name += ", tasks counted by the kernel"
        line += f"   PIDs: {bound}{limit.used}/{limit.max} in use ({share:.1f}% of {name})"
    if snapshot.cgroup_pids:
        current, most, _ = snapshot.cgroup_pids
        # pids.max 0 is how people freeze a fork bomb: say so rather than divide.
        usage = f"{100.0 * current / most:.1f}%" if most else "fork blocked"
        line += f"   cgroup pids: {current}/{most} ({usage})"
    return line


_COMMAND_WIDTH = 72  # when the width is unknown; the whole command line is in --json
_MIN_COMMAND_WIDTH = 20


def _command(group: ParentGroup, width: int) -> str:
    mark = "[PID 1 of its namespace] " if group.is_namespace_init else ""
    if group.cmdline:
        text = mark + printable(" ".join(group.cmdline))
    elif group.process is not None:
        text = f"{mark}[{printable(group.process.comm)}]"
    else:
        text = "(outside this PID namespace)"
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _status_summary(group: ParentGroup) -> str:
    return ", ".join(
        f"{text} x{count}" if count > 1 else text for text, count in group.statuses.most_common()
    )


ESTIMATE_NOTE = (
    "~: time of death estimated from the scheduler clock (/proc/PID/sched, a few ms off); "
    "ages without ~ are exact, from the kernel's exit events"
)


def age_text(zombie: Zombie, now: float) -> str:
    """How long *zombie* has been dead, ``~`` marking an estimate; ``?`` if unknown."""
    if zombie.exited_at is None:
        return "?"
    return ("" if zombie.exact else "~") + duration(now - zombie.exited_at)


def _oldest(zombies: list[Zombie], now: float) -> str:
    """How long the longest-dead has been dead: ``?`` if no time of death is known."""
    known = [z for z in zombies if z.exited_at is not None]
    if not known:
        return "?"
    prefix = ">=" if len(known) < len(zombies) else ""  # an unknown one may be older
    return prefix + age_text(min(known, key=lambda z: z.since), now)


def _parents_table(census: Census, style: Style, now: float) -> list[str]:
    rows = [["PPID", "ZOMBIES", "OLDEST", "EXIT STATUS", "PARENT"]]
    rows += [
        [str(g.pid), str(len(g.zombies)), _oldest(g.zombies, now), _status_summary(g), ""]
        for g in census.parents
    ]
    # The PARENT column gets what the terminal ($COLUMNS) leaves of its width.
    columns = terminal_columns()
    used = sum(max(len(r[i]) for r in rows) + 2 for i in range(4))
    width = max(columns - used, _MIN_COMMAND_WIDTH) if columns else _COMMAND_WIDTH
    for row, group in zip(rows[1:], census.parents, strict=True):
        row[4] = _command(group, width)
    lines = table(rows, right=frozenset({0, 1, 2}))
    return [style.bold(lines[0])] + [style.blame(line) for line in lines[1:]]


def _advice(census: Census, style: Style) -> list[str]:
    lines = ["A zombie is already dead: kill -9 cannot remove it."]
    if any(not g.is_namespace_init for g in census.parents):
        lines.append("Its parent must call wait(), or exit so that init adopts and reaps it.")
    inits = [str(g.pid) for g in census.parents if g.is_namespace_init]
    if inits:
        lines += [
            f"PID 1 of its namespace ({', '.join(inits)}) is not reaping: no init will adopt",
            "its zombies. Run the container's command under an init that reaps:",
            "undertaker run -- CMD, or docker run --init.",
        ]
    return [style.dim(line) for line in lines]


def render_census(
    census: Census,
    coverage: Coverage,
    style: Style,
    *,
    now: float | None = None,
    expand: bool = False,
    younger: tuple[int, float] | None = None,
) -> str:
    """The default view: header, parents responsible, then each zombie.

    Args:
        census: the zombies, grouped by parent.
        coverage: what the scan missed and the closest PID limit.
        style: colours.
        now: the time ages are measured to (default: now).
        expand: one row per zombie, instead of one per identical siblings.
        younger: ``(count, min_age)`` of zombies left out by ``--min-age``.
    """
    now = time.time() if now is None else now
    snap = census.snapshot
    out = [style.bold(tasks_line(snap, coverage))]
    out += [style.dim("note: " + n) for n in coverage.notes()]
    if younger and younger[0]:
        count, age = younger
        out.append(
            style.dim(
                f"note: {count} {plural(count, 'zombie')} dead for less than "
                f"{duration(age)} left out (--min-age)"
            )
        )
    zombies = census.zombies
    if not zombies:
        out.append(
            "no zombies seen: the view is incomplete" if coverage.incomplete else "no zombies"
        )
    else:
        parents = len(census.parents)
        out += [
            "",
            (
                f"{len(zombies)} {plural(len(zombies), 'zombie')} under {parents} "
                f"{plural(parents, 'parent')}:"
            ),
            "",
        ]
        out += _parents_table(census, style, now)
        out.append("")
        out += _zombie_table(zombies, style, now, expand=expand)
        if any(z.exited_at is not None and not z.exact for z in zombies):
            out.append(style.dim(ESTIMATE_NOTE))
        out.append("")
        out += _advice(census, style)
    if census.leaders:
        count = len(census.leaders)
        out += [
            "",
            (
                f"{count} zombie {plural(count, 'leader')}: alive, main thread exited, "
                "not reapable until the last thread ends:"
            ),
        ]
        rows = [["PID", "PPID", "LIVE THREADS", "COMM"]]
        rows += [
            [str(p.pid), str(p.ppid), str(live_threads(p)), printable(p.comm)]
            for p in census.leaders
        ]
        out += [style.leader(line) for line in table(rows, right=frozenset({0, 1, 2}))]
    return "\n".join(out)


def live_threads(proc: Process) -> int:
    """Threads still running: ``num_threads`` counts a zombie leader's dead main thread."""
    if proc.is_zombie:
        return 0
    return proc.threads - 1 if proc.is_zombie_leader else proc.threads


def _siblings(zombies: list[Zombie], expand: bool) -> list[list[Zombie]]:
    """Group zombies of one parent that look alike (name, status); each alone if *expand*."""
    ordered = sorted(zombies, key=lambda z: (z.process.ppid, z.since, z.process.pid))
    if expand:
        return [[z] for z in ordered]
    groups: dict[tuple[int, str, str], list[Zombie]] = {}
    for z in ordered:
        groups.setdefault((z.process.ppid, z.process.comm, str(z.status)), []).append(z)
    return list(groups.values())


def _zombie_table(zombies: list[Zombie], style: Style, now: float, *, expand: bool) -> list[str]:
    rows = [["PID", "PPID", "NSPID", "DEAD FOR", "EXIT", "COMM"]]
    for group in _siblings(zombies, expand):
        first = group[0]
        proc = first.process
        nspid = ",".join(map(str, first.nspid[1:])) if len(first.nspid) > 1 else "-"
        pid, comm = str(proc.pid), printable(proc.comm)
        if len(group) > 1:  # like pstree: 200*[worker], PIDs lowest-highest
            pid, comm = pid_span([z.process.pid for z in group]), f"{len(group)}*[{comm}]"
            nspid = "..." if nspid != "-" else nspid
        rows.append(
            [
                pid,
                str(proc.ppid),
                nspid,
                _oldest(group, now),
                str(first.status) if first.status else "unknown",
                comm,
            ]
        )
    lines = table(rows, right=frozenset({0, 1, 3}))
    return [style.bold(lines[0])] + [style.zombie(line) for line in lines[1:]]


def render_all(
    snapshot: Snapshot, coverage: Coverage, keep: Callable[[Process], bool], style: Style
) -> str:
    """Every process with its state, like ``ps -el``."""
    out = [style.bold(tasks_line(snapshot, coverage))]
    out += [style.dim("note: " + n) for n in coverage.notes()]
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
