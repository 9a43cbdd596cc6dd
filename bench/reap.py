"""Reap benchmark (issue 13): zombies cleared per second by ptrace, and how long the parent stops.

Run as root, with the project's interpreter::

    .venv/bin/python bench/reap.py [--zombies 1000] [--rounds 3] [--gdb-sample 10] [--json]

Each round starts one parent (``undertaker.testing.ZombieParent``, blocked
in ``read`` on its stdin) holding N zombies, then reaps them all:

* ``reap_via_ptrace``: one call for all N; the stops are measured by the
  tracer from the interrupt request to the detach (an upper bound of each
  stop of the parent), capped at 5 ms each (``max_stop``);
* gdb, one session: ``gdb -p PPID -batch`` with one ``call (int)waitpid(Z,0,1)``
  per zombie (plus ``set unwindonsignal on`` and ``handle SIGSTOP nostop
  noprint nopass``, without which gdb can corrupt a stopped parent); the
  parent stays stopped for the whole session, so the session is its stop;
* gdb, one invocation per zombie (the usual recipe), on a sample of
  ``--gdb-sample`` zombies: its rate is extrapolated, its stops are each
  invocation's wall time.

Every round asserts that every zombie is gone afterwards and that the parent
is still alive, then closes it (it reaps what is left and exits).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from undertaker.remedy import reap_via_ptrace
from undertaker.testing import ZombieParent, ZombieSpec, proc_state

GDB_SETUP = ["set unwindonsignal on", "handle SIGSTOP nostop noprint nopass"]


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _gone(zombies: list[int]) -> bool:
    return all(proc_state(z) is None for z in zombies)


def _ptrace_round(count: int) -> tuple[dict[str, float], list[float]]:
    with ZombieParent([ZombieSpec(code=i % 256) for i in range(count)], timeout=120) as zp:
        start = time.perf_counter()
        result = reap_via_ptrace(zp.pid, zp.zombies, max_stop=0.005)
        wall = time.perf_counter() - start
        assert result.reaped == zp.zombies, "not every zombie was reaped"
        assert _gone(zp.zombies)
        assert proc_state(zp.pid) == "S"
    return {"wall": wall, "rate": count / wall, "stops": len(result.stops)}, result.stops


def _gdb(pid: int, zombies: list[int]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".gdb", delete=False) as script:
        script.write("\n".join([*GDB_SETUP, *(f"call (int)waitpid({z},0,1)" for z in zombies)]))
    try:
        start = time.perf_counter()
        subprocess.run(
            ["gdb", "-nx", "-p", str(pid), "-batch", "-x", script.name],
            capture_output=True,
            check=True,
            timeout=600,
        )
        return time.perf_counter() - start
    finally:
        os.unlink(script.name)


def _gdb_round(count: int, sample: int) -> dict[str, float]:
    with ZombieParent([ZombieSpec(code=i % 256) for i in range(count)], timeout=120) as zp:
        session = _gdb(zp.pid, zp.zombies)
        assert _gone(zp.zombies), "gdb left zombies"
        assert proc_state(zp.pid) == "S"
    with ZombieParent([ZombieSpec(code=1)] * sample, timeout=120) as zp:
        each = [_gdb(zp.pid, [z]) for z in zp.zombies]
        assert _gone(zp.zombies)
    return {
        "session_wall": session,
        "session_rate": count / session,
        "each_p50": statistics.median(each),
        "each_max": max(each),
        "each_rate": 1 / statistics.median(each),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zombies", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gdb-sample", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/reap.py: needs root (ptrace of the parent, gdb attach)")
    if shutil.which("gdb") is None:
        sys.exit("bench/reap.py: needs gdb for the side-by-side rows")
    ours, theirs, stops = [], [], []
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):  # interleaved, so both see the same machine load
        figures, round_stops = _ptrace_round(args.zombies)
        ours.append(figures)
        stops.extend(round_stops)
        theirs.append(_gdb_round(args.zombies, args.gdb_sample))
    med = {k: statistics.median(r[k] for r in ours) for k in ours[0]}
    # Stops are pooled over every round: the p99 and the longest of them all.
    med.update(stop_p50=statistics.median(stops), stop_p99=_p99(stops), stop_max=max(stops))
    med["over_5ms"] = sum(s > 0.005 for s in stops) / len(stops)
    gmed = {k: statistics.median(r[k] for r in theirs) for k in theirs[0]}
    worst = med["stop_max"]
    report = {
        "zombies": args.zombies,
        "rounds": args.rounds,
        "load_average": [load_before, os.getloadavg()[0]],
        "ptrace": med,
        "gdb": gmed,
        "ptrace_worst_stop": worst,
        "ratio_rate_vs_gdb_session": med["rate"] / gmed["session_rate"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    n = args.zombies
    print(
        f"{n} zombies of one parent, median of {args.rounds} rounds (stops: all rounds); "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    print("| method | cleared/s | longest stop of the parent | stops |")
    print("|---|---|---|---|")
    print(
        f"| `reap_via_ptrace` (max_stop 5 ms) | {med['rate']:,.0f} | "
        f"p50 {med['stop_p50'] * 1e3:.2f} ms, p99 {med['stop_p99'] * 1e3:.2f} ms, "
        f"max {med['stop_max'] * 1e3:.2f} ms; {med['over_5ms']:.1%} over 5 ms "
        f"| {med['stops']:.0f} per round |"
    )
    print(
        f"| gdb, one session, {n} `call waitpid` | {gmed['session_rate']:,.0f} | "
        f"{gmed['session_wall'] * 1e3:,.0f} ms (the whole session) | 1 |"
    )
    print(
        f"| gdb, one invocation per zombie | {gmed['each_rate']:,.1f} | "
        f"p50 {gmed['each_p50'] * 1e3:,.0f} ms, max {gmed['each_max'] * 1e3:,.0f} ms "
        "| 1 per zombie |"
    )
    print(
        f"\nptrace / gdb session: {report['ratio_rate_vs_gdb_session']:.1f}x the rate; "
        f"target >= 1,000/s with every stop <= 5 ms: "
        f"{'met' if med['rate'] >= 1000 and worst <= 0.005 else 'missed'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
