"""Event-driven table against full scans (issue 11): what a scrape costs, what a storm loses.

Run as root on the host (the proc connector names the initial PID
namespace's PIDs, so this cannot run in a private namespace as scan.py does)::

    .venv/bin/python bench/events.py [--processes 10000] [--zombies 1000] [--parents 10]
                                     [--repeat 9] [--storm 10000] [--json]

It starts ``--processes`` extra processes (``undertaker.testing.populate``:
``--zombies`` zombies and the rest sleepers, over ``--parents`` parents),
then times, interleaved, the median of ``--repeat`` rounds after one warm-up:

* ``scan + census``: ``scan(owners=False)`` then ``take_census`` and the two
  table-wide figures a scrape reports (``state_counts``, ``pids_used``);
* ``events + census``: the same from ``EventTable.snapshot()``, steady state
  (nothing of ours changes between rounds; the rest of the machine runs on).

Every round asserts both see exactly the zombies the workload made. Then a
storm: one process forks ``--storm`` children that exit at once, each reaped,
while the table (default settings) is not read; afterwards it reports the
events received, the overflows (ENOBUFS: lost events), and what the first
snapshot after the storm cost. Everything it starts is closed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from undertaker.census import take_census
from undertaker.proc import EventTable, scan
from undertaker.testing import populate

if TYPE_CHECKING:
    from collections.abc import Callable

    from undertaker.proc import Snapshot

TARGET = 10.0  # issue 11: steady-state scrape >= 10x faster than a full scan

_STORM = (
    "import os, sys\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        os._exit(0)\n"
    "    os.waitpid(pid, 0)\n"
)


def scrape(snapshot: Snapshot, expected: set[int]) -> None:
    """What a scrape computes from a snapshot; check the workload's zombies are all there."""
    census = take_census(snapshot)
    _ = snapshot.state_counts, snapshot.pids_used
    seen = {z.process.pid for z in census.zombies}
    missing = expected - seen
    if missing:
        raise SystemExit(f"bench: {len(missing)} of the workload's zombies not reported")


def timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def steady(table: EventTable, expected: set[int], repeat: int) -> dict[str, Any]:
    """Interleaved medians of a scan-based and an event-based scrape."""
    rows: dict[str, list[float]] = {"scan + census": [], "events + census": []}
    steps = {
        "scan + census": lambda: scrape(scan(owners=False), expected),
        "events + census": lambda: scrape(table.snapshot(), expected),
    }
    for round_ in range(repeat + 1):
        order = list(steps) if round_ % 2 == 0 else list(reversed(steps))
        for name in order:
            took = timed(steps[name])
            if round_:  # the first round warms caches up and is discarded
                rows[name].append(took)
    medians = {name: statistics.median(times) for name, times in rows.items()}
    ratio = medians["scan + census"] / medians["events + census"]
    return {"medians_ms": {k: round(v * 1000, 2) for k, v in medians.items()}, "ratio": ratio}


def storm(table: EventTable, count: int) -> dict[str, Any]:
    """Fork *count* short-lived processes without reading; report what the table saw."""
    table.snapshot()
    before = dict(table.counts.as_dict())
    start = time.monotonic()
    subprocess.run([sys.executable, "-I", "-S", "-c", _STORM, str(count)], check=True)
    took = time.monotonic() - start
    snap_cost = timed(table.snapshot)
    after = table.counts.as_dict()
    return {
        "processes": count,
        "seconds": round(took, 2),
        "forks_per_second": round(count / took),
        "fork_events": after["forks"] - before["forks"],
        "exit_events": after["exits"] - before["exits"],
        "overflows": after["overflows"] - before["overflows"],
        "rescans": after["scans"] - before["scans"],
        "snapshot_after_ms": round(snap_cost * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=10000)
    parser.add_argument("--zombies", type=int, default=1000)
    parser.add_argument("--parents", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--storm", type=int, default=10000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (the proc connector, and a 32 MiB buffer)")
    parents = populate(args.processes, args.zombies, args.parents)
    try:
        expected = {pid for parent in parents for pid in parent.zombies}
        with EventTable(resync=1e9) as table:
            if table.source != "events":
                raise SystemExit(f"bench: no events here: {table.fallback}")
            size = len(table.snapshot().processes)
            result: dict[str, Any] = {"table": size, "zombies": len(expected)}
            result["steady"] = steady(table, expected, args.repeat)
        with EventTable() as table:  # default settings, as the issue asks
            result["storm"] = storm(table, args.storm)
    finally:
        for parent in parents:
            parent.close()
    result["target"] = TARGET
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    medians = result["steady"]["medians_ms"]
    print(f"table: {result['table']} processes, {result['zombies']} zombies of ours")
    for name, value in medians.items():
        print(f"  {name:<18} {value:8.2f} ms")
    ratio = result["steady"]["ratio"]
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"  scan / events      {ratio:8.1f}x  (target >= {TARGET:g}x: {verdict})")
    s = result["storm"]
    print(
        f"storm: {s['processes']} processes in {s['seconds']} s ({s['forks_per_second']}/s): "
        f"{s['fork_events']} fork and {s['exit_events']} exit events, "
        f"{s['overflows']} overflows (lost), {s['rescans']} rescans; "
        f"first snapshot after it {s['snapshot_after_ms']} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
