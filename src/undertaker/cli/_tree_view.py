"""Format ``undertaker tree``: the process tree with zombies and their ancestry marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from undertaker.census import zombie_ancestry
from undertaker.cli._style import Style, printable
from undertaker.wait import WaitStatus

if TYPE_CHECKING:
    from undertaker.proc import Process, Snapshot

_UNICODE = ("├─ ", "└─ ", "│  ", "   ")
_ASCII = ("|- ", "`- ", "|  ", "   ")


def _label(proc: Process, snapshot: Snapshot, style: Style, marked: set[int]) -> str:
    text = f"{proc.pid} {printable(proc.comm)}"
    if proc.is_zombie:
        status = f" {WaitStatus(proc.exit_code & 0xFFFF)}" if proc.exit_code is not None else ""
        return style.zombie(f"{text} <defunct>{status}")
    if proc.is_zombie_leader:
        return style.leader(f"{text} <zombie leader, {proc.threads - 1} live threads>")
    if proc.pid in marked:
        dead = sum(1 for kid in snapshot.children(proc.pid) if kid.is_zombie)
        if dead:
            return style.blame(f"{text} [{dead} zombie{'s' if dead > 1 else ''}]")
        return style.blame(text)
    return text


def render_tree(
    snapshot: Snapshot, style: Style, *, zombies_only: bool = False, ascii_only: bool = False
) -> str:
    """Draw every process under its parent, like pstree.

    Args:
        snapshot: the scan to draw.
        style: colours (plain when off).
        zombies_only: keep only the branches that lead to a zombie or zombie leader.
        ascii_only: draw with ASCII instead of box-drawing characters.
    """
    tee, elbow, pipe, gap = _ASCII if ascii_only else _UNICODE
    marked = zombie_ancestry(snapshot)
    procs = snapshot.processes
    roots = [p for p in sorted(procs.values()) if p.ppid not in procs or p.ppid == p.pid]
    lines: list[str] = []
    seen: set[int] = set()
    for root in roots:
        if zombies_only and root.pid not in marked:
            continue
        # Iterative depth-first walk: a 10,000-deep chain must not hit the recursion limit.
        stack: list[tuple[Process, str, str]] = [(root, "", "")]
        while stack:
            proc, head, tail = stack.pop()
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            lines.append(head + _label(proc, snapshot, style, marked))
            kids = [
                k
                for k in snapshot.children(proc.pid)
                if k.pid != proc.pid and (not zombies_only or k.pid in marked)
            ]
            for i in range(len(kids) - 1, -1, -1):
                last = i == len(kids) - 1
                branch, rest = (elbow, gap) if last else (tee, pipe)
                stack.append((kids[i], tail + branch, tail + rest))
    if not lines:
        return "no zombies" if zombies_only else "no processes"
    return "\n".join(lines)
