"""Scanner benchmark (issue 3, item 6): undertaker against psutil and ps.

Run as root, with the project's interpreter::

    /work/main/.venv/bin/python bench/scan.py [--sizes 1000,10000,11100/100] [--repeat 7] [--json]

The script re-executes itself as PID 1 of a private PID namespace
(``unshare --pid --fork --mount-proc --kill-child``), so ``ps``, psutil and
undertaker all read exactly the same process table, and everything it starts
dies with the namespace. Each size ``N`` or ``N/P`` adds N processes: 1,000
zombies spread over P parents (10 by default), the rest sleepers shared
between the same parents; ``11100/100`` is 10,000 sleepers and 1,000 zombies
over 100 parents (issue 8). For each it times, side by side and interleaved,
as medians over ``--repeat`` rounds (one warm-up round first, discarded):

* ``undertaker.proc.scan()`` cold: a fresh interpreter per round, import and
  scan timed inside it (interpreter start excluded); and warm, in this process;
* ``psutil.process_iter(['pid','ppid','status','name'])`` cold, the same way:
  import and call are timed separately, the ratio uses import + call on both
  sides (what a fresh CLI pays after interpreter start);
* ``undertaker ps --json`` and ``ps -eo pid,ppid,stat,comm`` end to end: the
  wall time of the command run as a subprocess, interpreter start included,
  and its CPU time (user + system), which other work on a shared machine
  disturbs less than the wall time.

All four must report the same set of zombies, which must be the zombies the
workload made (checked every round). It also times plain ``undertaker ps`` on
the idle table, in the namespace and on the host. Targets (issues 3 and 8):
psutil / scan >= 5x and ps / ``undertaker ps --json`` >= 3x from 10,000
processes on, for both shapes; ``undertaker ps`` idle < 100 ms. The package's
bytecode is compiled first, as ``pip install`` does: this environment sets
``PYTHONDONTWRITEBYTECODE``, and every start would otherwise recompile it.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

import undertaker
from undertaker.proc import scan
from undertaker.testing import populate

ZOMBIES = 1000
PARENTS = 10  # unless the size says otherwise (N/P)
SIZES = "1000,10000,11100/100"
STEP_TIMEOUT = 300.0  # seconds any one measured command may take
TARGETS = {"psutil/scan": 5.0, "ps/undertaker ps --json": 3.0}
IDLE_TARGET = 0.100

_BIN = os.path.dirname(sys.executable)
_CONSOLE = os.path.join(_BIN, "undertaker")
UNDERTAKER = [_CONSOLE] if os.access(_CONSOLE, os.X_OK) else [sys.executable, "-m", "undertaker"]

# Run in a fresh interpreter; prints import and call times and the zombie PIDs.
_COLD_SCAN = """
import json, sys, time
t0 = time.perf_counter()
import undertaker
from undertaker.proc import scan
t1 = time.perf_counter()
zombies = sorted(p.pid for p in scan(owners=sys.argv[1] == "owners").zombies)
t2 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, zombies]))
"""
_COLD_PSUTIL = """
import json, sys, time
t0 = time.perf_counter()
import psutil
t1 = time.perf_counter()
zombies = sorted(p.info["pid"] for p in psutil.process_iter(["pid", "ppid", "status", "name"])
                 if p.info["status"] == psutil.STATUS_ZOMBIE)
t2 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, zombies]))
"""

Sample = tuple[dict[str, float], list[int]]  # timings by label, zombie PIDs found


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str]) -> tuple[float, str, float]:
    """Run *argv*, return its wall time, stdout and CPU time; exit status 0 or 1 is success."""
    cpu = _cpu_of_children()  # the command forks nothing: the difference is its own
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()}")
    return wall, done.stdout, _cpu_of_children() - cpu


def cold(code: str, name: str, *args: str) -> Sample:
    """Import and call timed inside a fresh interpreter."""
    _, out, _ = _run([sys.executable, "-c", code, *args])
    imported, called, zombies = json.loads(out)
    return {f"{name} import": imported, f"{name} call": called, name: imported + called}, zombies


def scan_warm() -> Sample:
    """The scan API in this (warm) process."""
    start = time.perf_counter()
    zombies = sorted(p.pid for p in scan().zombies)
    return {"scan warm": time.perf_counter() - start}, zombies


def undertaker_json() -> Sample:
    """``undertaker ps --json`` end to end."""
    wall, out, cpu = _run([*UNDERTAKER, "ps", "--json"])
    zombies = sorted(z["pid"] for z in json.loads(out)["zombies"])
    return {"undertaker ps --json": wall, "undertaker ps --json cpu": cpu}, zombies


def ps_eo() -> Sample:
    """``ps -eo pid,ppid,stat,comm`` end to end; ``Zl`` (a zombie leader) is not a zombie."""
    wall, out, cpu = _run(["ps", "-eo", "pid,ppid,stat,comm"])
    zombies = []
    for line in out.splitlines()[1:]:
        pid, _, stat, *_ = line.split(None, 3)
        if stat.startswith("Z") and "l" not in stat:
            zombies.append(int(pid))
    return {"ps -eo": wall, "ps -eo cpu": cpu}, sorted(zombies)


METHODS = [
    # The psutil call reads pid, ppid, status and name: the like-for-like scan
    # skips the owners (uid); the full scan reads them too.
    lambda: cold(_COLD_SCAN, "scan cold", "no-owners"),
    lambda: cold(_COLD_SCAN, "scan+owners cold", "owners"),
    scan_warm,
    lambda: cold(_COLD_PSUTIL, "psutil cold"),
    undertaker_json,
    ps_eo,
]


def reap_orphans() -> None:
    """As PID 1, reap whatever was re-parented to us and has exited."""
    if os.getpid() != 1:
        return
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def time_idle(repeat: int) -> dict[str, float]:
    """Plain ``undertaker ps`` on the table as it is, median wall time."""
    walls = [_run([*UNDERTAKER, "ps"])[0] for _ in range(repeat + 1)][1:]
    return {"processes": len(scan().processes), "undertaker ps": statistics.median(walls)}


def parse_size(text: str) -> tuple[int, int]:
    """``N`` or ``N/P``: N extra processes under P zombie parents (default 10)."""
    extra, _, parents = text.partition("/")
    return int(extra), int(parents or PARENTS)


def measure_size(extra: int, nparents: int, repeat: int) -> dict[str, Any]:
    """Populate the table with *extra* processes, time every method, clean up."""
    print(f"populating {extra} processes under {nparents} parents ...", file=sys.stderr, flush=True)
    parents = populate(extra, ZOMBIES, nparents)
    try:
        expected = sorted(z for p in parents for z in p.zombies)
        table = len(scan().processes)
        samples: dict[str, list[float]] = {}
        for rnd in range(repeat + 1):
            shift = rnd % len(METHODS)  # rotate the order so no method always goes first
            for method in METHODS[shift:] + METHODS[:shift]:
                timings, zombies = method()
                if zombies != expected:
                    missing, extra_z = set(expected) - set(zombies), set(zombies) - set(expected)
                    label = next(iter(timings))
                    msg = (
                        f"{label}: zombie set differs: {len(missing)} missing, {len(extra_z)} extra"
                    )
                    raise RuntimeError(msg)
                if rnd:  # round 0 warms caches and is discarded
                    for label, seconds in timings.items():
                        samples.setdefault(label, []).append(seconds)
                reap_orphans()
            print(f"  round {rnd}/{repeat} done", file=sys.stderr, flush=True)
    finally:
        for parent in parents:
            parent.close()
        reap_orphans()
    left = scan().zombies
    if os.getpid() == 1 and left:
        raise RuntimeError(f"{len(left)} zombies left after clean-up")
    median = {label: statistics.median(values) for label, values in samples.items()}
    # Per round, ps and undertaker ran back to back: their ratio in that round
    # is less disturbed by load that comes and goes than a ratio of medians.
    paired = sorted(
        ps / ours
        for ps, ours in zip(samples["ps -eo"], samples["undertaker ps --json"], strict=True)
    )
    return {
        "extra": extra,
        "parents": nparents,
        "processes": table,
        "zombies": len(expected),
        "median": median,
        "ratios": {
            "psutil/scan": median["psutil cold"] / median["scan cold"],
            "psutil/scan (call only)": median["psutil cold call"] / median["scan cold call"],
            "psutil/scan with owners": median["psutil cold"] / median["scan+owners cold"],
            "ps/undertaker ps --json": median["ps -eo"] / median["undertaker ps --json"],
            "ps/undertaker ps --json (CPU)": median["ps -eo cpu"]
            / median["undertaker ps --json cpu"],
            "ps/undertaker ps --json (paired)": statistics.median(paired),
        },
        "paired": paired,
        "load": os.getloadavg()[0],
    }


def in_namespace(sizes: list[tuple[int, int]], repeat: int) -> dict[str, Any]:
    """Everything that needs the private table: idle first, then each size."""
    return {
        "idle": time_idle(repeat),
        "sizes": [measure_size(extra, parents, repeat) for extra, parents in sizes],
    }


def host_zombies() -> int:
    """Zombies on the host right now (other users' too): for the leak check."""
    return len(scan().zombies)


def via_unshare(argv: list[str]) -> dict[str, Any]:
    """Re-run this script as PID 1 of a new PID namespace and collect its results."""
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    done = subprocess.run(
        [*cmd, sys.executable, os.path.abspath(__file__), *argv, "--inner"],
        stdout=subprocess.PIPE,
        text=True,
        timeout=3600,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def report(results: dict[str, Any]) -> str:
    """The human-readable table."""
    out = [f"medians of {results['repeat']} rounds (after 1 warm-up), {results['python']}"]
    for size in results["sizes"]:
        m = {label: seconds * 1000 for label, seconds in size["median"].items()}
        header = f"{size['extra']:,} extra processes: {size['processes']:,} in the table"
        out += [
            "",
            (
                f"{header}, {size['zombies']:,} zombies under {size['parents']} parents"
                " (same set found by all four)"
            ),
            (
                f"  scan(owners=False) cold       {m['scan cold']:9.1f} ms"
                f"   (import {m['scan cold import']:.1f}, call {m['scan cold call']:.1f})"
            ),
            f"  scan(owners=True) cold        {m['scan+owners cold']:9.1f} ms",
            f"  scan() warm, in process       {m['scan warm']:9.1f} ms",
            (
                f"  psutil cold, import+call      {m['psutil cold']:9.1f} ms"
                f"   (import {m['psutil cold import']:.1f}, call {m['psutil cold call']:.1f})"
            ),
            (
                f"  undertaker ps --json, e2e     {m['undertaker ps --json']:9.1f} ms"
                f"   (CPU {m['undertaker ps --json cpu']:.1f})"
            ),
            f"  ps -eo pid,ppid,stat,comm     {m['ps -eo']:9.1f} ms   (CPU {m['ps -eo cpu']:.1f})",
        ]
        for name, ratio in size["ratios"].items():
            target = TARGETS.get(name.removesuffix(" (paired)"))
            verdict = ""
            if target is not None and size["extra"] >= 10000:
                verdict = f"   target >= {target:.0f}x: {'met' if ratio >= target else 'MISSED'}"
            out.append(f"  ratio {name:<30}{ratio:8.2f}x{verdict}")
        paired = size["paired"]
        out.append(
            f"  paired ps/undertaker ps --json per round: {paired[0]:.2f}x to {paired[-1]:.2f}x,"
            f" {sum(r >= TARGETS['ps/undertaker ps --json'] for r in paired)} of {len(paired)}"
            f" rounds >= 3x; load average {size['load']:.2f} at the end"
        )
    out.append("")
    for where, idle in results["idle"].items():
        met = "met" if idle["undertaker ps"] < IDLE_TARGET else "MISSED"
        out.append(
            f"undertaker ps, idle {where} ({idle['processes']} processes): "
            f"{idle['undertaker ps'] * 1000:.1f} ms   target < 100 ms: {met}"
        )
    if "host zombies" in results:
        before, after = results["host zombies"]
        out.append(f"host zombies before/after: {before}/{after}")
    return "\n".join(out)


def main() -> int:
    """Parse options; measure in a namespace (re-executing if needed); report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=SIZES, help=f"extra processes N or N/PARENTS, comma-separated ({SIZES})"
    )
    parser.add_argument("--repeat", type=int, default=7, help="measured rounds per size")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes: expected N or N/PARENTS, comma-separated, not {args.sizes!r}")
    results: dict[str, Any]
    if os.getpid() == 1:
        # PID 1 ignores SIGTERM without a handler: turn it into a clean exit.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        measured = in_namespace(sizes, args.repeat)
        if args.inner:
            print(json.dumps(measured))
            return 0
        results = {
            "idle": {"namespace": measured["idle"]},
            "sizes": measured["sizes"],
        }
    else:
        if os.geteuid() != 0:
            parser.error("needs root to create a PID namespace")
        compileall.compile_dir(os.path.dirname(undertaker.__file__), quiet=1)
        before = host_zombies()
        host_idle = time_idle(args.repeat)
        measured = via_unshare(sys.argv[1:])
        results = {
            "idle": {"namespace": measured["idle"], "host": host_idle},
            "sizes": measured["sizes"],
            "host zombies": [before, host_zombies()],
        }
    results |= {"repeat": args.repeat, "python": sys.version.split()[0]}
    print(json.dumps(results, indent=1) if args.json else report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
