"""Exporter benchmark (issue 10): the cost of one scrape, undertaker against node_exporter.

Run as root, with the project's interpreter::

    .venv/bin/python bench/exporter.py [--sizes 1000,10000] [--zombies 100] [--repeat 7]
                                       [--modes scan] [--no-process-exporter] [--json]
    .venv/bin/python bench/exporter.py --events [--sizes 10000] [--storm 10000]

The script re-executes itself as PID 1 of a private PID namespace
(``unshare --pid --fork --mount-proc --kill-child``), so every exporter reads
the same process table and everything dies with the namespace. For each size
N it starts N extra processes (``--zombies`` zombies over 10 parents, the
rest sleepers; ``undertaker.testing.populate``), then starts, side by side on
loopback:

* ``undertaker exporter`` once per ``--modes`` entry: ``scan`` (one scan of
  /proc per scrape) and ``events`` (``--events``: a table kept current from
  the kernel's process events); a mode is a name and the extra arguments it
  adds (see ``MODES``);
* ``prometheus-node-exporter --collector.disable-defaults --collector.processes
  --web.disable-exporter-metrics``: the processes collector alone;
* ``prometheus-process-exporter`` grouping every process by name, if installed.

Each round scrapes every exporter once, in rotating order; a round 0 warms
up and is discarded. It records the wall time of the HTTP GET of /metrics
(the scrape as Prometheus sees it) and the CPU time the exporter process
spent on it (user + system from /proc/PID/stat, which other work on a
shared machine disturbs less). Every scrape is checked: undertaker's
``undertaker_zombies`` and node_exporter's ``node_processes_state{state="Z"}``
must equal the zombies the workload made. Target: undertaker's scrape at
least 2.5x faster than node_exporter's at 10,000 processes.

``--events`` (issue 11) measures ``scan`` and ``events`` side by side. The
proc connector only serves the initial PID namespace, so this runs on the
host instead: the zombie check is then "at least the workload's" (the host
may hold others). Target: the ``events`` scrape at least 10x faster than the
``scan`` scrape at 10,000 processes. After the rounds, a storm: one process
forks ``--storm`` children that exit at once (each reaped) while nobody
scrapes; the events exporter's counters then say how many events arrived and
how many times the kernel dropped some (``undertaker_event_overflows_total``,
target 0 with the default settings), and the next scrape's time is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from undertaker.proc import scan
from undertaker.testing import populate

SIZES = "1000,10000"
ZOMBIES = 100
PARENTS = 10
TARGET = 2.5  # node_exporter / undertaker, at 10,000 processes
EVENTS_TARGET = 10.0  # undertaker (scan) / undertaker (events), at 10,000 processes
UNDERTAKER = [sys.executable, "-m", "undertaker", "exporter", "--listen", "127.0.0.1:0"]
# mode -> extra arguments of `undertaker exporter`
MODES: dict[str, list[str]] = {"scan": [], "events": ["--events"]}
_STORM = (
    "import os, sys\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        os._exit(0)\n"
    "    os.waitpid(pid, 0)\n"
)
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROCESS_EXPORTER = shutil.which("prometheus-process-exporter") or shutil.which("process-exporter")
_TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Exporter:
    """One exporter process we started: its URL, how to check its answer, its CPU time."""

    def __init__(self, label: str, argv: list[str], port: int | None, zombies: re.Pattern[str]):
        self.label = label
        self.at_least = False  # on the host: other zombies may exist besides the workload's
        self.zombies = zombies  # the line holding the zombie count, group 1 the value
        stderr = subprocess.PIPE if port is None else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        if port is None:  # undertaker says where it listens
            assert self.proc.stderr is not None
            line = self.proc.stderr.readline()
            port = int(line.rsplit(":", 1)[1].split("/")[0])
            self.proc.stderr.close()
        self.url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"{label} did not start") from None
                time.sleep(0.05)

    def get(self) -> str:
        with urllib.request.urlopen(self.url, timeout=120) as response:  # noqa: S310  (loopback)
            return response.read().decode()

    def cpu(self) -> float:
        """User + system seconds of the exporter process (its threads included)."""
        with open(f"/proc/{self.proc.pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    def scrape(self, expected: int) -> tuple[float, float]:
        """One scrape: wall seconds, CPU seconds; checks the zombie count."""
        cpu = self.cpu()
        start = time.perf_counter()
        body = self.get()
        wall = time.perf_counter() - start
        used = self.cpu() - cpu
        if self.zombies.pattern:
            found = self.zombies.search(body)
            count = int(float(found.group(1))) if found else 0  # node_exporter: absent at 0
            if count < expected if self.at_least else count != expected:
                raise RuntimeError(f"{self.label}: {count} zombies, expected {expected}")
        return wall, used

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child, by its PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def exporter_specs(
    modes: list[str], with_process_exporter: bool, tmp: str
) -> list[tuple[str, list[str], int | None, re.Pattern[str]]]:
    """(label, argv, port or None if it reports its own, zombie-count pattern) of each."""
    specs: list[tuple[str, list[str], int | None, re.Pattern[str]]] = [
        (
            f"undertaker ({mode})",
            [*UNDERTAKER, *MODES[mode]],
            None,
            re.compile(r"^undertaker_zombies ([0-9.e+]+)$", re.MULTILINE),
        )
        for mode in modes
    ]
    if NODE_EXPORTER:
        port = _free_port()
        argv = [NODE_EXPORTER, "--collector.disable-defaults", "--collector.processes"]
        argv += ["--web.disable-exporter-metrics", f"--web.listen-address=127.0.0.1:{port}"]
        zombies = re.compile(r'^node_processes_state\{state="Z"\} ([0-9.e+]+)$', re.MULTILINE)
        specs.append(("node_exporter", argv, port, zombies))
    if with_process_exporter and PROCESS_EXPORTER:
        config = os.path.join(tmp, "process-exporter.yml")
        with open(config, "w") as out:
            out.write("process_names:\n  - name: '{{.Comm}}'\n    cmdline: ['.+']\n")
        port = _free_port()
        argv = [PROCESS_EXPORTER, "-config.path", config, "-threads=false", "-gather-smaps=false"]
        argv += ["-web.listen-address", f"127.0.0.1:{port}"]
        # It counts the threads of named groups: not comparable, so left unchecked.
        specs.append(("process-exporter", argv, port, re.compile("")))
    return specs


def start_exporters(modes: list[str], with_process_exporter: bool, tmp: str) -> list[Exporter]:
    """Every exporter to compare, started on loopback."""
    started: list[Exporter] = []
    try:
        for spec in exporter_specs(modes, with_process_exporter, tmp):
            started.append(Exporter(*spec))  # noqa: PERF401  (each may fail: close the rest)
    except BaseException:
        for exporter in started:
            exporter.close()
        raise
    return started


def measure_size(extra: int, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """Populate the table, scrape every exporter --repeat times, clean up."""
    print(f"populating {extra} processes ...", file=sys.stderr, flush=True)
    parents = populate(extra, args.zombies, PARENTS)
    exporters: list[Exporter] = []
    try:
        expected = sum(len(p.zombies) for p in parents)
        table = len(scan().processes)
        exporters = start_exporters(args.modes, args.process_exporter, tmp)
        for exporter in exporters:
            exporter.at_least = args.events
        walls: dict[str, list[float]] = {e.label: [] for e in exporters}
        cpus: dict[str, list[float]] = {e.label: [] for e in exporters}
        for rnd in range(args.repeat + 1):
            shift = rnd % len(exporters)
            for exporter in exporters[shift:] + exporters[:shift]:
                wall, cpu = exporter.scrape(expected)
                if rnd:  # round 0 warms caches and is discarded
                    walls[exporter.label].append(wall)
                    cpus[exporter.label].append(cpu)
            print(f"  round {rnd}/{args.repeat}", file=sys.stderr, flush=True)
        events = next((e for e in exporters if e.label == "undertaker (events)"), None)
        storm = fork_storm(events, args.storm, expected) if events and args.storm else None
    finally:
        for exporter in exporters:
            exporter.close()
        for parent in parents:
            parent.close()
    return {
        "extra": extra,
        "processes": table,
        "zombies": expected,
        "wall": {label: statistics.median(v) for label, v in walls.items()},
        "cpu": {label: statistics.median(v) for label, v in cpus.items()},
        "storm": storm,
    }


def _counter(body: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def fork_storm(exporter: Exporter, count: int, expected: int) -> dict[str, Any]:
    """*count* short-lived processes while nobody scrapes; what the events exporter saw."""
    names = {
        "forks": 'undertaker_process_events_total{kind="fork"}',
        "exits": 'undertaker_process_events_total{kind="exit"}',
        "overflows": "undertaker_event_overflows_total",
        "full_scans": "undertaker_table_full_scans_total",
    }
    body = exporter.get()
    before = {key: _counter(body, name) for key, name in names.items()}
    start = time.monotonic()
    subprocess.run([sys.executable, "-I", "-S", "-c", _STORM, str(count)], check=True)
    took = time.monotonic() - start
    wall, _ = exporter.scrape(expected)
    body = exporter.get()
    after = {key: _counter(body, name) for key, name in names.items()}
    found = {key: int(after[key] - before[key]) for key in names}
    return {"processes": count, "seconds": round(took, 2), "scrape_after": wall, **found}


def report(results: dict[str, Any]) -> str:
    """The human-readable table, with node_exporter / undertaker ratios."""
    out = [f"medians of {results['repeat']} scrapes (after 1 warm-up), {results['python']}"]
    for size in results["sizes"]:
        out += ["", f"{size['processes']:,} processes in the table, {size['zombies']} zombies"]
        for label, wall in size["wall"].items():
            cpu = size["cpu"][label]
            out.append(f"  {label:<22} {wall * 1000:9.1f} ms   (CPU {cpu * 1000:.1f} ms)")
        node = size["wall"].get("node_exporter")
        for label, wall in size["wall"].items():
            if not label.startswith("undertaker") or node is None:
                continue
            ratio = node / wall
            cpu_ratio = size["cpu"]["node_exporter"] / max(size["cpu"][label], 1e-9)
            verdict = ""
            if size["extra"] >= 10000:
                verdict = f"   target >= {TARGET}x: {'met' if ratio >= TARGET else 'MISSED'}"
            out.append(
                f"  ratio node_exporter / {label}: {ratio:.2f}x (CPU {cpu_ratio:.2f}x){verdict}"
            )
        scan_wall = size["wall"].get("undertaker (scan)")
        events_wall = size["wall"].get("undertaker (events)")
        if scan_wall and events_wall:
            ratio = scan_wall / events_wall
            cpu_ratio = size["cpu"]["undertaker (scan)"] / max(
                size["cpu"]["undertaker (events)"], 1e-9
            )
            verdict = ""
            if size["extra"] >= 10000:
                met = "met" if ratio >= EVENTS_TARGET else "MISSED"
                verdict = f"   target >= {EVENTS_TARGET:g}x: {met}"
            out.append(f"  ratio scan / events: {ratio:.2f}x (CPU {cpu_ratio:.2f}x){verdict}")
        storm = size.get("storm")
        if storm:
            out.append(
                f"  storm of {storm['processes']:,} processes in {storm['seconds']} s: "
                f"{storm['forks']:,} fork and {storm['exits']:,} exit events, "
                f"{storm['overflows']} overflows (lost events), {storm['full_scans']} full scans; "
                f"next scrape {storm['scrape_after'] * 1000:.1f} ms"
            )
    return "\n".join(out)


def main() -> int:
    """Parse options; measure in a namespace (re-executing if needed); report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=SIZES, help=f"extra processes, comma-separated ({SIZES})"
    )
    parser.add_argument("--zombies", type=int, default=ZOMBIES, help=f"zombies ({ZOMBIES})")
    parser.add_argument("--repeat", type=int, default=7, help="measured scrapes per exporter")
    parser.add_argument(
        "--modes", default="scan", help=f"undertaker modes, comma-separated ({','.join(MODES)})"
    )
    parser.add_argument("--no-process-exporter", dest="process_exporter", action="store_false")
    parser.add_argument(
        "--events",
        action="store_true",
        help="compare --events with scan, on the host (issue 11); implies --modes scan,events",
    )
    parser.add_argument(
        "--storm", type=int, default=10000, help="with --events: short-lived processes (10000)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    if args.events:
        args.modes = list(dict.fromkeys(["scan", "events", *args.modes]))
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))} (known: {', '.join(MODES)})")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes: expected numbers, comma-separated, not {args.sizes!r}")
    if args.events and os.geteuid() != 0:
        parser.error("--events needs root (the proc connector, and its 32 MiB buffer)")
    if os.getpid() != 1 and not args.events:  # events only exist in the initial namespace
        if os.geteuid() != 0:
            parser.error("needs root to create a PID namespace")
        cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable]
        done = subprocess.run(
            [*cmd, os.path.abspath(__file__), *sys.argv[1:], "--inner"],
            stdout=subprocess.PIPE, text=True, timeout=3600, check=True,
        )  # fmt: skip
        results = json.loads(done.stdout)
        print(json.dumps(results, indent=1) if args.json else report(results))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # PID 1 ignores it otherwise
    with tempfile.TemporaryDirectory() as tmp:
        measured = [measure_size(n, args, tmp) for n in sizes]
    results = {"sizes": measured, "repeat": args.repeat, "python": sys.version.split()[0]}
    if args.events:  # on the host: report here
        print(json.dumps(results, indent=1) if args.json else report(results))
    else:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
