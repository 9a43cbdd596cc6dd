"""Exact against estimated ages in what ps and why print (issue 11, item 2).

A plain scan only has the scheduler clock's estimate, which ps and why mark
with ``~`` and ``exited_at_exact: false``; a snapshot from an EventTable that
listened when the zombie died carries the kernel's time, unmarked. The
formatters are the ones the commands use, fed by a real table.
"""

from __future__ import annotations

import os
import re
import time

from helpers import cli, cli_json, fork_zombie, needs_events
from undertaker.census import take_census
from undertaker.cli._coverage import assess
from undertaker.cli._ps_json import census_json
from undertaker.cli._ps_view import render_census
from undertaker.cli._style import Style
from undertaker.cli._why_json import explanation_json
from undertaker.cli._why_view import render_explanation
from undertaker.diagnose import explain
from undertaker.proc import EventTable
from undertaker.testing import ZombieParent, ZombieSpec, sleep_until


def test_ps_marks_scan_ages_as_estimates() -> None:
    """ps (a scan) prints ~ before each age, says what ~ means, and JSON says not exact."""
    with ZombieParent([ZombieSpec(code=3)]) as parent:
        done = cli("ps", "--ppid", str(parent.pid))
        _, doc = cli_json("ps", "--ppid", str(parent.pid))
        why = cli("why", str(parent.pid))
    row = next(line for line in done.stdout.splitlines() if line.split()[:1] == [str(parent.pid)])
    assert row.split()[2].startswith("~")  # OLDEST
    assert "~: time of death estimated" in done.stdout
    assert doc["source"] == "scan"
    assert doc["table_age"] == 0
    (zombie,) = doc["zombies"]
    assert zombie["exited_at"] is not None
    assert zombie["exited_at_exact"] is False
    assert re.search(r"oldest dead ~\d", why.stdout), why.stdout


@needs_events
def test_event_snapshot_ages_are_exact_in_ps_and_why() -> None:
    """Fed an EventTable snapshot, ps and why print the kernel's exit time, unmarked."""
    with EventTable(resync=1e9) as table:
        pid, died = fork_zombie(4)
        try:
            assert sleep_until(lambda: pid in table.snapshot().exit_times)
            snap = table.snapshot()
            census = take_census(snap, lambda p: p.ppid == os.getpid())
            doc = census_json(census, assess(snap))
            text = render_census(census, assess(snap), Style(enabled=False))
            found = explain(snap, [pid])
            why_doc = explanation_json(found)
            why_text = render_explanation(found, Style(enabled=False), time.time())
        finally:
            os.waitpid(pid, 0)
    assert doc["source"] == "events"
    (zombie,) = doc["zombies"]
    assert zombie["exited_at_exact"] is True
    assert abs(zombie["exited_at"] - died) < 0.050
    assert "~" not in text
    (parent,) = why_doc["parents"]
    assert why_doc["source"] == "events"
    assert parent["zombies"][0]["exited_at_exact"] is True
    assert re.search(r"oldest dead \d", why_text), why_text
