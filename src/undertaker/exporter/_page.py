"""The exporter's HTML page: the current zombies by parent, readable without Grafana.

Static HTML (no script), every value escaped: command names are chosen by
whoever runs the process. Parents are shown by PID and command name, never
by command line, which may hold secrets.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from undertaker import __version__
from undertaker.cli._ps_view import _oldest, _status_summary
from undertaker.cli._style import plural, printable

if TYPE_CHECKING:
    from undertaker.census import Census, ParentGroup
    from undertaker.exporter._reading import Reading

_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #bbb;padding:.2em .6em;text-align:left}td.n{text-align:right}"
)


def _parent_name(group: ParentGroup) -> str:
    # The command name only: full command lines may carry secrets, and the page
    # may be reachable from the network. `undertaker why PPID` shows the rest.
    if group.process is not None:
        return printable(group.process.comm)
    return "(outside this PID namespace)"


def render_page(reading: Reading, census: Census, source: str) -> str:
    """The page: a summary line and one table row per parent holding zombies."""
    now = time.time()
    esc = html.escape
    rows = [
        "<tr>"
        f'<td class="n">{group.pid}</td><td>{esc(_parent_name(group))}</td>'
        f'<td class="n">{len(group.zombies)}</td><td>{esc(_oldest(group.zombies, now))}</td>'
        f"<td>{esc(_status_summary(group))}</td></tr>"
        for group in census.parents
    ]
    zombies = len(census.zombies)
    summary = (
        f"{zombies} {plural(zombies, 'zombie')} under "
        f"{len(rows)} {plural(len(rows), 'parent')}, "
        f"{reading.leaders} live zombie {plural(reading.leaders, 'leader')}, "
        f"{sum(reading.states.values())} processes"
    )
    if not reading.complete:
        summary += f" (incomplete view: {reading.unreadable} unreadable; counts are lower bounds)"
    body = (
        '<table id="zombies"><thead><tr><th>PPID</th><th>PARENT</th><th>ZOMBIES</th>'
        "<th>OLDEST</th><th>EXIT STATUS</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else '<p id="none">No zombies.</p>'
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>undertaker exporter</title>'
        f"<style>{_STYLE}</style></head><body><h1>Zombies</h1>"
        f'<p id="summary">{esc(summary)}</p>{body}'
        f'<p><a href="metrics">metrics</a> · table source: {esc(source)} · '
        f"undertaker {__version__}</p></body></html>\n"
    )
