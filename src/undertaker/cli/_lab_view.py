"""Format ``undertaker lab``: the list, each experiment's report, the summary."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from undertaker.cli._style import Style, printable, table, terminal_columns
from undertaker.lab import SEEDS

if TYPE_CHECKING:
    from undertaker.lab import Experiment

_MARKS = {
    "confirmed": "CONFIRMED",
    "refuted": "REFUTED",
    "depends": "DEPENDS",
    "skipped": "SKIPPED",
    "error": "ERROR",
}


def _width() -> int:
    """The terminal's width, 80 when not a terminal; never so narrow that text breaks up."""
    return max(terminal_columns() or 80, 60)


def _wrap(text: str, first: str, rest: str) -> list[str]:
    """*text* wrapped to the width, after *first* on its first line and *rest* on the others."""
    return textwrap.wrap(
        text,
        _width(),
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [first.rstrip()]


def _with_claims(rows: list[list[str]], claims: list[str]) -> list[str]:
    """*rows* as a table (the header first), each followed by its claim wrapped alongside."""
    lines = table([[*row, ""] for row in rows])
    indent = " " * (len(lines[0]) + 2)
    out = [lines[0] + "  CLAIM"]
    for line, claim in zip(lines[1:], claims, strict=True):
        out += _wrap(claim, line.ljust(len(indent)), indent)
    return out


def render_list(experiments: tuple[Experiment, ...]) -> str:
    """One entry per experiment: id, article, claim (wrapped to the width)."""
    rows = [["ID", "ARTICLE"], *([e.id, e.seed] for e in experiments)]
    lines = _with_claims(rows, [e.claim for e in experiments])
    return "\n".join([*lines, "", "Run one: undertaker lab run ID; all: undertaker lab run --all"])


def _mark(status: str, style: Style) -> str:
    text = _MARKS.get(status, status.upper())
    if status == "error":
        return style.zombie(text)
    return style.bold(text) if status in ("confirmed", "refuted", "depends") else style.dim(text)


def _process_table(rows: list[dict[str, Any]], style: Style) -> list[str]:
    """Rows as ``undertaker ps --all`` prints them; a process already gone says so."""
    cells = [["PID", "PPID", "PGID", "S", "EXIT", "COMM"]]
    kinds = []
    for row in rows:
        if row["state"] is None:
            cells.append([str(row["pid"]), "-", "-", "-", "", "(gone)"])
        else:
            cells.append(
                [
                    str(row["pid"]),
                    str(row["ppid"]),
                    str(row.get("pgid", "")),
                    row["state"],
                    row["exit"] or "",
                    printable(row["comm"]),
                ]
            )
        kinds.append(row["state"])
    lines = table(cells, right=frozenset({0, 1, 2}))
    out = [style.bold(lines[0])]
    for line, state in zip(lines[1:], kinds, strict=True):
        out.append(style.zombie(line + "  <defunct>") if state == "Z" else line)
    return out


def render_result(result: dict[str, Any], style: Style) -> str:
    """One experiment: claim, the process tables, observations, verdict."""
    head = f"== {result['id']}  (article {result['seed']}, {result['isolation']}) =="
    gap = " " * 10
    out = [style.bold(head), *_wrap(result["claim"], "claim     ", gap)]
    for snap in result["tables"]:
        out.append(f"  {snap['label']}:")
        out += ["    " + line for line in _process_table(snap["rows"], style)]
    for i, text in enumerate(result["observed"]):
        out += _wrap(text, "observed  " if i == 0 else gap, gap)
    mark = _MARKS.get(result["status"], result["status"].upper())
    verdict = _wrap(f"{mark}: {result['why']}", "verdict   ", gap)
    verdict[0] = verdict[0].replace(mark, _mark(result["status"], style), 1)
    out += verdict
    if result["left_behind"]:
        pids = ", ".join(str(r["pid"]) for r in result["left_behind"])
        out.append(style.zombie(f"left behind (killed and reaped by the sandbox): {pids}"))
    if result["status"] == "error" and result.get("stderr"):
        out += ["  " + line for line in result["stderr"].strip().splitlines()[-6:]]
    return "\n".join(out)


def render_summary(results: list[dict[str, Any]], style: Style) -> str:
    """Each claim with its verdict and article, then the counts."""
    rows = [["ID", "VERDICT", "ARTICLE"]]
    rows += [[r["id"], _MARKS[r["status"]], r["seed"]] for r in results]
    out = [style.bold("Summary"), *_with_claims(rows, [r["claim"] for r in results])]
    counts = summary_counts(results)
    out.append(", ".join(f"{n} {status}" for status, n in counts.items() if n))
    out += ["", "Articles (the seed articles of undertaker, see docs/lab.md):"]
    for seed, title in SEEDS.items():
        if any(r["seed"] == seed for r in results):
            out += _wrap(title, f"  {seed}  ", " " * 7)
    return "\n".join(out)


def summary_counts(results: list[dict[str, Any]]) -> dict[str, int]:
    """How many results have each status, in a fixed order."""
    return {status: sum(r["status"] == status for r in results) for status in _MARKS}
