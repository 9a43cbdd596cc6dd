"""Format ``undertaker lab``: the list, each experiment's report, the summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from undertaker.cli._style import Style, printable, table
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


def render_list(experiments: tuple[Experiment, ...]) -> str:
    """One line per experiment: id, article, claim."""
    rows = [["ID", "ARTICLE", "CLAIM"]]
    rows += [[e.id, e.seed, e.claim] for e in experiments]
    lines = table(rows)
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
    out = [style.bold(head), f"claim     {result['claim']}"]
    for snap in result["tables"]:
        out.append(f"  {snap['label']}:")
        out += ["    " + line for line in _process_table(snap["rows"], style)]
    for i, text in enumerate(result["observed"]):
        out.append(("observed  " if i == 0 else "          ") + text)
    out.append(f"verdict   {_mark(result['status'], style)}: {result['why']}")
    if result["left_behind"]:
        pids = ", ".join(str(r["pid"]) for r in result["left_behind"])
        out.append(style.zombie(f"left behind (killed and reaped by the sandbox): {pids}"))
    if result["status"] == "error" and result.get("stderr"):
        out += ["  " + line for line in result["stderr"].strip().splitlines()[-6:]]
    return "\n".join(out)


def render_summary(results: list[dict[str, Any]], style: Style) -> str:
    """Each claim with its verdict and article, then the counts."""
    rows = [["ID", "VERDICT", "ARTICLE", "CLAIM"]]
    rows += [[r["id"], _MARKS[r["status"]], r["seed"], r["claim"]] for r in results]
    out = [style.bold("Summary"), *table(rows)]
    counts = summary_counts(results)
    out.append(", ".join(f"{n} {status}" for status, n in counts.items() if n))
    out += ["", "Articles (the seed articles of undertaker, see docs/lab.md):"]
    out += [
        f"  {seed}  {title}"
        for seed, title in SEEDS.items()
        if any(r["seed"] == seed for r in results)
    ]
    return "\n".join(out)


def summary_counts(results: list[dict[str, Any]]) -> dict[str, int]:
    """How many results have each status, in a fixed order."""
    return {status: sum(r["status"] == status for r in results) for status in _MARKS}
