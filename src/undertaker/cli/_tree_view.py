"""Format ``undertaker tree``: the process tree with zombies and their ancestry marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from undertaker._errors import NoSuchProcess
from undertaker.census import kept_status, zombie_ancestry
from undertaker.cli._style import Style, pid_span, plural, printable
from undertaker.wait import has_cap_sys_ptrace

if TYPE_CHECKING:
    from undertaker.proc import Process, Snapshot

_UNICODE = ("├─ ", "└─ ", "│  ", "   ")
_ASCII = ("|- ", "`- ", "|  ", "   ")


def _statuses(snapshot: Snapshot) -> dict[int, str]:
    """Each zombie's exit status as text; empty when the kernel hides it."""
    privileged = has_cap_sys_ptrace() if snapshot.zombies else True
    found = {}
    for proc in snapshot.zombies:
        try:
            status = kept_status(proc, snapshot.root, privileged)
        except NoSuchProcess:
            status = None  # reaped since the scan: what the scan saw stays drawn
        found[proc.pid] = f" {status}" if status is not None else ""
    return found


class _Labels:
    """How each process prints: name, state marks, colours, and alike siblings."""

    def __init__(self, snapshot: Snapshot, style: Style) -> None:
        self.snapshot = snapshot
        self.style = style
        self.marked = zombie_ancestry(snapshot)
        self.statuses = _statuses(snapshot)

    def suffix(self, proc: Process) -> str:
        """What follows the name: ``<defunct> exited 7``, ``<zombie leader, ...>``, or nothing."""
        if proc.is_zombie:
            return f" <defunct>{self.statuses.get(proc.pid, '')}"
        if proc.is_zombie_leader:
            live = proc.threads - 1  # num_threads counts the exited main thread
            return f" <zombie leader, {live} live {plural(live, 'thread')}>"
        return ""

    def label(self, procs: list[Process]) -> str:
        """One line's text for a process, or for alike siblings (``200*[worker]``)."""
        proc, style = procs[0], self.style
        if len(procs) > 1:
            name = f"{len(procs)}*[{printable(proc.comm)}]"
            text = f"{name}{self.suffix(proc)} (pids {pid_span([p.pid for p in procs])})"
        else:
            text = f"{proc.pid} {printable(proc.comm)}{self.suffix(proc)}"
        if proc.is_zombie:
            return style.zombie(text)
        if proc.is_zombie_leader:
            return style.leader(text)
        if proc.pid in self.marked:
            dead = sum(1 for kid in self.snapshot.children(proc.pid) if kid.is_zombie)
            if dead:
                return style.blame(f"{text} [{dead} {plural(dead, 'zombie')}]")
            return style.blame(text)
        return text

    def collapse(self, kids: list[Process], expand: bool) -> list[list[Process]]:
        """Group childless siblings that print alike; in order of first PID."""
        if expand:
            return [[k] for k in kids]
        groups: dict[object, list[Process]] = {}
        for kid in kids:
            alike: object = kid.pid  # a process with children stays on its own
            if not self.snapshot.children(kid.pid):
                alike = (kid.comm, self.suffix(kid), kid.is_zombie or kid.is_zombie_leader)
            groups.setdefault(alike, []).append(kid)
        return list(groups.values())


def render_tree(
    snapshot: Snapshot,
    style: Style,
    *,
    zombies_only: bool = False,
    ascii_only: bool = False,
    expand: bool = False,
    incomplete: bool = False,
) -> str:
    """Draw every process under its parent, like pstree.

    Args:
        snapshot: the scan to draw.
        style: colours (plain when off).
        zombies_only: keep only the branches that lead to a zombie or zombie leader.
        ascii_only: draw with ASCII instead of box-drawing characters.
        expand: one line per process; otherwise childless siblings that print
            alike share a line (``200*[worker]``).
        incomplete: the scan missed processes, so an empty result is no "no zombies".
    """
    tee, elbow, pipe, gap = _ASCII if ascii_only else _UNICODE
    labels = _Labels(snapshot, style)
    marked = labels.marked
    procs = snapshot.processes
    roots = [p for p in sorted(procs.values()) if p.ppid not in procs or p.ppid == p.pid]
    lines: list[str] = []
    seen: set[int] = set()
    for root in roots:
        if zombies_only and root.pid not in marked:
            continue
        # Iterative depth-first walk: a 10,000-deep chain must not hit the recursion limit.
        stack: list[tuple[list[Process], str, str]] = [([root], "", "")]
        while stack:
            group, head, tail = stack.pop()
            proc = group[0]
            if proc.pid in seen:
                continue
            seen.update(p.pid for p in group)
            lines.append(head + labels.label(group))
            kids = [
                k
                for k in snapshot.children(proc.pid)
                if k.pid != proc.pid and (not zombies_only or k.pid in marked)
            ]
            if len(group) > 1:
                continue  # only childless processes are grouped
            grouped = labels.collapse(kids, expand)
            for i in range(len(grouped) - 1, -1, -1):
                last = i == len(grouped) - 1
                branch, rest = (elbow, gap) if last else (tee, pipe)
                stack.append((grouped[i], tail + branch, tail + rest))
    if not lines and zombies_only:
        return "no zombies seen: the view is incomplete" if incomplete else "no zombies"
    if not lines:
        return "no processes"
    return "\n".join(lines)
