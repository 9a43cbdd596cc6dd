"""Init benchmark (issue 4): ``undertaker run`` against tini, dumb-init and catatonit.

Run as root, with the project's interpreter::

    /work/main/.venv/bin/python bench/init.py [--storm 5000] [--samples 300] [--json]

Every init runs as PID 1 of its own PID namespace
(``unshare --pid --fork --mount-proc --kill-child``), so whatever a run
leaves behind dies with it. Measured side by side, interleaved, in rotating
order, medians:

* orphan storm: the child forks a middle process that forks N grandchildren
  blocked on a pipe and exits, so all N are orphans of the init; closing the
  pipe makes them exit at once. ``total`` is the whole run (unshare to exit),
  ``reap`` is release until the last orphan's /proc entry is gone (seen by
  the child); the child then counts zombies in the namespace, which must be 0.
  The target ratio is paired: per round, ours over the fastest C init of that
  same round, then the median over rounds;
* signal forwarding latency: SIGTERM and SIGUSR1 sent to the init (by its
  host PID) until the child's handler runs (its CLOCK_MONOTONIC stamp, the
  same clock in every namespace), p50 and p99;
* start-up overhead: ``INIT -- /bin/true`` minus ``/bin/true``, both under
  the same unshare;
* RSS of the init (VmRSS) while its child waits.

The package's bytecode is compiled first (``compileall``), as ``pip
install`` does: this environment sets PYTHONDONTWRITEBYTECODE, and timing a
source compile on every start would measure the wrong thing.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
UNDERTAKER = str(Path(sys.executable).parent / "undertaker")
# undertaker: --grace 1h because SIGTERM starts the drain, and the latency
# child must survive 300 of them.
INITS = {
    "undertaker": [UNDERTAKER, "run", "--grace", "1h", "--"],
    "tini": ["tini", "--"],
    "dumb-init": ["dumb-init", "--"],
    "catatonit": ["catatonit", "--"],
}
C_INITS = ("tini", "dumb-init", "catatonit")

STORM_CHILD = r"""
import json, os, sys, time
count = int(sys.argv[1])
release_r, release_w = os.pipe()
ready_r, ready_w = os.pipe()
middle = os.fork()
if middle == 0:
    os.close(release_w); os.close(ready_r)
    for _ in range(count):
        if os.fork() == 0:
            os.close(ready_w)
            os.read(release_r, 1)
            os._exit(0)
    os._exit(0)
os.close(ready_w); os.close(release_r)
os.read(ready_r, 1)  # EOF: the middle and every orphan closed it
os.waitpid(middle, 0)
base = 2  # the init and this process
start = time.monotonic()
os.close(release_w)
while len([n for n in os.listdir("/proc") if n.isdigit()]) > base:
    time.sleep(0.001)
reap = time.monotonic() - start
zombies = 0
for name in os.listdir("/proc"):
    if name.isdigit():
        with open(f"/proc/{name}/stat", "rb") as f:
            data = f.read()
        zombies += data[data.rfind(b")") + 2:][:1] == b"Z"
print(json.dumps({"reap": reap, "zombies": zombies}))
"""

# Stamps CLOCK_MONOTONIC in the handler; exits at EOF on stdin.
LATENCY_CHILD = r"""
import os, signal, time
def stamp(signum, frame):
    os.write(1, b"%d %d\n" % (signum, time.monotonic_ns()))
signal.signal(signal.SIGTERM, stamp)
signal.signal(signal.SIGUSR1, stamp)
os.write(1, b"ready\n")
while os.read(0, 1):
    pass
"""


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(word) for word in listing.read().split()]
    except FileNotFoundError:
        return []


def wait_for_init(unshare_pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = children_of(unshare_pid)
        if kids:
            return kids[0]
        time.sleep(0.0005)
    raise RuntimeError("the init did not start")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run_storm(init: str, count: int) -> dict[str, float]:
    argv = [*UNSHARE, *INITS[init], sys.executable, "-I", "-S", "-c", STORM_CHILD, str(count)]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    total = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{init} storm failed: {done.returncode} {done.stderr[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"total": total, "reap": result["reap"], "zombies": result["zombies"]}


def run_latency(init: str, samples: int) -> dict[str, list[float] | float]:
    argv = [*UNSHARE, *INITS[init], sys.executable, "-I", "-S", "-c", LATENCY_CHILD]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdin is not None
    out: dict[str, list[float] | float] = {"SIGTERM": [], "SIGUSR1": []}
    try:
        init_pid = wait_for_init(proc.pid)
        if proc.stdout.readline() != b"ready\n":
            raise RuntimeError(f"{init}: child did not start")
        with open(f"/proc/{init_pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        out["rss_kb"] = float(fields["VmRSS"].split()[0])
        for _ in range(samples):
            for signum in (signal.SIGTERM, signal.SIGUSR1):
                sent = time.monotonic_ns()
                os.kill(init_pid, signum)
                got, stamp = proc.stdout.readline().split()
                if int(got) != signum:
                    raise RuntimeError(f"{init}: expected {signum}, got {got!r}")
                series = out[signal.Signals(signum).name]
                assert isinstance(series, list)
                series.append((int(stamp) - sent) / 1000.0)  # microseconds
                time.sleep(0.002)  # let the init go back to waiting
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()  # unshare, our own child: --kill-child ends the namespace
            proc.wait()
        proc.stdout.close()
    return out


def time_run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_startup(runs: int) -> dict[str, float]:
    base = [*UNSHARE, "/bin/true"]
    times: dict[str, list[float]] = {name: [] for name in [*INITS, "baseline"]}
    for _ in range(runs):
        times["baseline"].append(time_run(base))
        for name, argv in INITS.items():
            times[name].append(time_run([*UNSHARE, *argv, "/bin/true"]))
    baseline = statistics.median(times["baseline"])
    return {name: (statistics.median(t) - baseline) * 1000 for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storm", type=int, default=5000, help="orphans per storm (5000)")
    parser.add_argument("--storm-rounds", type=int, default=7, help="storm runs per init (7)")
    parser.add_argument("--samples", type=int, default=300, help="latency samples per signal")
    parser.add_argument("--startup-runs", type=int, default=40, help="start-up runs per init")
    parser.add_argument("--json", action="store_true", help="print the raw medians as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/init.py: needs root (PID namespaces)", file=sys.stderr)
        return 2
    missing = [name for name, argv in INITS.items() if not shutil.which(argv[0])]
    if missing:
        print(f"bench/init.py: not installed: {', '.join(missing)}", file=sys.stderr)
        return 2
    compileall.compile_dir(str(REPO / "src" / "undertaker"), quiet=1)
    names = list(INITS)

    storms: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_ in range(args.storm_rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            storms[name].append(run_storm(name, args.storm))

    latency: dict[str, dict[str, list[float]]] = {n: {"SIGTERM": [], "SIGUSR1": []} for n in names}
    rss: dict[str, float] = {}
    chunks = 3
    for round_ in range(chunks):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            got = run_latency(name, args.samples // chunks)
            for sig in ("SIGTERM", "SIGUSR1"):
                series = got[sig]
                assert isinstance(series, list)
                latency[name][sig].extend(series)
            rss_kb = got["rss_kb"]
            assert isinstance(rss_kb, float)
            rss[name] = max(rss.get(name, 0.0), rss_kb)

    startup = run_startup(args.startup_runs)

    rows = {}
    for name in names:
        rows[name] = {
            "storm_total_s": statistics.median(s["total"] for s in storms[name]),
            "storm_reap_ms": statistics.median(s["reap"] for s in storms[name]) * 1000,
            "zombies_left": max(s["zombies"] for s in storms[name]),
            "term_p50_us": statistics.median(latency[name]["SIGTERM"]),
            "term_p99_us": percentile(latency[name]["SIGTERM"], 0.99),
            "usr1_p50_us": statistics.median(latency[name]["SIGUSR1"]),
            "usr1_p99_us": percentile(latency[name]["SIGUSR1"], 0.99),
            "startup_ms": startup[name],
            "rss_mb": rss[name] / 1024,
        }
    # Paired: each round runs all four back to back, so a burst of load from
    # elsewhere hits the whole round; the median of per-round ratios cancels it.
    paired = [
        storms["undertaker"][r]["total"] / min(storms[c][r]["total"] for c in C_INITS)
        for r in range(args.storm_rounds)
    ]
    rows["undertaker"]["storm_total_paired_ratio"] = statistics.median(paired)
    report(rows, args)
    return 0


def report(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    ours = rows["undertaker"]
    fastest_total = min(rows[c]["storm_total_s"] for c in C_INITS)
    fastest_reap = min(rows[c]["storm_reap_ms"] for c in C_INITS)
    tini = rows["tini"]
    print(
        f"storm {args.storm} orphans x {args.storm_rounds} rounds; "
        f"{args.samples} latency samples per signal; {args.startup_runs} start-up runs\n"
    )
    head = (
        "| init | storm total s | storm reap ms | zombies left | TERM p50 µs | TERM p99 µs "
        "| USR1 p50 µs | USR1 p99 µs | start-up ms | RSS MB |"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['storm_total_s']:.2f} | {row['storm_reap_ms']:.0f} "
            f"| {row['zombies_left']:.0f} | {row['term_p50_us']:.0f} | {row['term_p99_us']:.0f} "
            f"| {row['usr1_p50_us']:.0f} | {row['usr1_p99_us']:.0f} | {row['startup_ms']:.1f} "
            f"| {row['rss_mb']:.1f} |"
        )
    checks = [
        ("storm total / fastest C init", ours["storm_total_s"] / fastest_total, "(medians)"),
        ("storm total, paired per round", ours["storm_total_paired_ratio"], "<= 1.10"),
        ("storm reap / fastest C init", ours["storm_reap_ms"] / fastest_reap, "(reported)"),
        ("zombies left", ours["zombies_left"], "== 0"),
        ("TERM p50 / tini p50", ours["term_p50_us"] / tini["term_p50_us"], "<= 1.50"),
        ("USR1 p50 / tini p50", ours["usr1_p50_us"] / tini["usr1_p50_us"], "<= 1.50"),
        ("start-up overhead ms", ours["startup_ms"], "< 25"),
        ("RSS MB", ours["rss_mb"], "< 12"),
    ]
    print()
    for label, value, target in checks:
        print(f"{label:32} {value:8.2f}   target {target}")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
