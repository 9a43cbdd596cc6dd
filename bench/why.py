"""``undertaker why`` on an idle machine (issue 9): target under 100 ms end to end.

Run with the project's interpreter (as root for the namespace rows)::

    .venv/bin/python bench/why.py [--repeat 15] [--json]

Times, interleaved, the median wall time of ``undertaker why`` (no zombies:
the idle case), ``undertaker ps`` (the same scan, formatted as a table) and
``python -c pass`` (interpreter start, the floor both pay), on the host and
inside a private PID namespace where the table holds nothing but the
benchmark; then ``why`` with one parent holding 3 zombies (one diagnosis) on
the host, as ``why PID``. Reports median wall time and CPU time (user +
system of the command, from ``wait4``'s rusage: far less inflated than wall
time when other work shares the CPUs), and the ratios ``why / ps``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from undertaker.testing import ZombieParent, ZombieSpec

TARGET = 0.100
_CONSOLE = os.path.join(os.path.dirname(sys.executable), "undertaker")
UNDERTAKER = [_CONSOLE] if os.access(_CONSOLE, os.X_OK) else [sys.executable, "-m", "undertaker"]
_NS = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


def _run(argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, from wait4's rusage) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)  # our own child: reaped here, with its rusage
    proc.returncode = 0  # already reaped: keep Popen from waiting again
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def _rows(repeat: int, commands: dict[str, list[str]]) -> dict[str, float]:
    """Median wall and CPU seconds per command (keys ``NAME`` and ``NAME cpu``)."""
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # warm-up, discarded
        _run(argv)
    for round_ in range(repeat):
        names = list(commands)
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order: no position bias
            seconds, used = _run(commands[name])
            wall[name].append(seconds)
            cpu[name].append(used)
    medians = {name: statistics.median(values) for name, values in wall.items()}
    return medians | {f"{name} cpu": statistics.median(values) for name, values in cpu.items()}


def _in_namespace(repeat: int) -> dict[str, float] | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import json, sys; sys.path[:0] = [{here!r}]; import why as b; "
        f"print(json.dumps(b._host_rows({repeat})))"
    )
    done = subprocess.run(
        [*_NS, sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    rows: dict[str, float] = json.loads(done.stdout)
    return rows


def _host_rows(repeat: int) -> dict[str, float]:
    return _rows(
        repeat,
        {
            "python -c pass": [sys.executable, "-c", "pass"],
            "undertaker ps": [*UNDERTAKER, "ps"],
            "undertaker why": [*UNDERTAKER, "why"],
        },
    )


def main() -> int:
    """Measure and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "namespace": _in_namespace(args.repeat),
        "host": _host_rows(args.repeat),
    }
    with ZombieParent([ZombieSpec(code=7)] * 3, name="benchparent") as parent:
        result["host, why PID (3 zombies)"] = _rows(
            args.repeat, {"undertaker why PID": [*UNDERTAKER, "why", str(parent.pid)]}
        )
    if args.json:
        print(json.dumps(result))
        return 0
    for where, rows in result.items():
        if rows is None:
            print(f"{where}: skipped (needs root and unshare)")
            continue
        print(f"{where}:")
        print(f"  {'':<22} {'wall':>9} {'cpu':>9}")
        for name in [n for n in rows if not n.endswith(" cpu")]:
            print(f"  {name:<22} {rows[name] * 1000:6.1f} ms {rows[name + ' cpu'] * 1000:6.1f} ms")
        if "undertaker ps" in rows:
            ratio = rows["undertaker why"] / rows["undertaker ps"]
            cpu_ratio = rows["undertaker why cpu"] / rows["undertaker ps cpu"]
            verdict = "meets" if rows["undertaker why"] < TARGET else "MISSES"
            print(f"  why / ps               {ratio:6.2f}x    {cpu_ratio:6.2f}x")
            print(f"  why wall {verdict} the 100 ms target; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
