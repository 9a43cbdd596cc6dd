"""Format one frame of ``undertaker top``: pure text from a census, no terminal I/O."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from undertaker.cli._ps_view import ESTIMATE_NOTE, age_text, tasks_line
from undertaker.cli._style import Style, duration, plural, printable, table

if TYPE_CHECKING:
    from undertaker.census import Census, ParentGroup
    from undertaker.cli._coverage import Coverage

_FIXED_ROWS = 8  # header lines and footer around the parents table


class Baseline(NamedTuple):
    """What the first frame saw: growth is measured from it."""

    started: float  # time.time() of the first frame
    zombies: int
    by_parent: dict[tuple[int, int], int]  # (pid, start_ticks) -> zombies


def baseline(census: Census, now: float) -> Baseline:
    """Remember the first frame's counts."""
    return Baseline(now, len(census.zombies), {_who(g): len(g.zombies) for g in census.parents})


def _who(group: ParentGroup) -> tuple[int, int]:
    """A parent's identity: a PID reused by another process starts from zero again."""
    return (group.pid, group.process.start_ticks if group.process else 0)


def _signed(number: int) -> str:
    return f"+{number}" if number > 0 else str(number)


def _command(group: ParentGroup) -> str:
    if group.cmdline:
        return printable(" ".join(group.cmdline))
    if group.process is not None:
        return f"[{printable(group.process.comm)}]"
    return "(outside this PID namespace)"


def worst(census: Census, base: Baseline) -> ParentGroup | None:
    """The parent to look at first: the most zombies, then the fastest growth."""
    if not census.parents:
        return None
    return max(
        census.parents,
        key=lambda g: (len(g.zombies), len(g.zombies) - base.by_parent.get(_who(g), 0), -g.pid),
    )


def render_frame(
    census: Census,
    coverage: Coverage,
    base: Baseline,
    style: Style,
    *,
    size: tuple[int, int],
    interval: float,
    source: str,
    now: float | None = None,
) -> list[str]:
    """One screen: header, tasks and PID pressure, zombie growth, parents, footer.

    Args:
        census: this frame's zombies by parent.
        coverage: what the snapshot missed, and the tightest PID limit.
        base: the first frame, for growth.
        style: colours (the worst parent is shown in reverse video when on).
        size: ``(columns, rows)`` of the terminal; lines are cut to fit.
        interval: the refresh interval, for the header.
        source: where the table comes from, said in the header.
        now: the time ages are measured to (default: now).
    """
    now = time.time() if now is None else now
    columns, rows = size
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    zombies = len(census.zombies)
    leaders = len(census.leaders)
    lines = [
        style.bold(
            f"undertaker top - {clock}  running {duration(now - base.started)}  "
            f"every {interval:g}s  {source}"[:columns]
        ),
        tasks_line(census.snapshot, coverage)[:columns],
        (
            f"Zombies: {zombies} ({_signed(zombies - base.zombies)} since start) under "
            f"{len(census.parents)} {plural(len(census.parents), 'parent')}"
            + (f", {leaders} zombie {plural(leaders, 'leader')}" if leaders else "")
        )[:columns],
    ]
    lines += [style.dim(("note: " + n)[:columns]) for n in coverage.notes()]
    lines.append("")
    header = ["PPID", "ZOMBIES", "GROWTH", "OLDEST", "EXIT STATUS", "PARENT"]
    body = []
    for group in census.parents[: max(rows - _FIXED_ROWS - len(lines), 1)]:
        grown = len(group.zombies) - base.by_parent.get(_who(group), 0)
        oldest = group.oldest
        statuses = ", ".join(
            f"{text} x{count}" if count > 1 else text
            for text, count in group.statuses.most_common(3)
        )
        body.append(
            [
                str(group.pid),
                str(len(group.zombies)),
                _signed(grown),
                age_text(oldest, now),
                statuses,
                _command(group),
            ]
        )
    if body:
        top = worst(census, base)
        formatted = table([header, *body], right=frozenset({0, 1, 2, 3}))
        lines.append(style.bold(formatted[0][:columns]))
        for row, group in zip(formatted[1:], census.parents, strict=False):
            fitted = row[:columns]
            lines.append(style.reverse(fitted) if group is top else style.blame(fitted))
        hidden = len(census.parents) - len(body)
        if hidden > 0:
            lines.append(style.dim(f"... {hidden} more {plural(hidden, 'parent')}"))
        if top is not None:
            count = len(top.zombies)
            worst_line = (
                f"worst: pid {top.pid} holds {count} {plural(count, 'zombie')}: "
                f"undertaker why {top.pid}"
            )
            lines += ["", worst_line[:columns]]
        if any(z.exited_at is not None and not z.exact for z in census.zombies):
            lines.append(style.dim(ESTIMATE_NOTE[:columns]))
    else:
        lines.append("no zombies")
    lines += ["", style.dim("q: quit")]
    return lines
