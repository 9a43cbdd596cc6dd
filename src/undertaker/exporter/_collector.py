"""The custom collector: one table read per scrape, turned into metric families.

Naming follows the Prometheus conventions: the ``undertaker_`` prefix, base
units in the name (``_seconds``), ``_total`` only on counters, ``_info`` for
constant-1 series that carry labels. Series that queries and alerts depend on
are always present, at 0 when there is nothing to count.
"""

from __future__ import annotations

import platform
import threading
import time
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import CollectorRegistry

from undertaker import __version__
from undertaker._errors import UndertakerError
from undertaker.census import Census, take_census
from undertaker.exporter._deaths import DeathTimes
from undertaker.exporter._reading import STATE_LETTERS, Reading, read_table

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from undertaker.exporter._source import TableSource
    from undertaker.proc import EventCounts

PREFIX = "undertaker_"


def _gauge(name: str, doc: str, value: float | None = None, **kw: object) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value, **kw)  # type: ignore[arg-type]


class ZombieCollector:
    """Collects the zombie metrics from a table source, once per scrape.

    Reads are serialised: a source may hold state between calls (open files,
    an event-fed table), and the error counter is shared.
    """

    def __init__(self, source: TableSource, top: int = 10) -> None:
        """Read tables from *source*; label at most *top* parents and containers each."""
        self.source = source
        self.top = top
        self.errors = 0
        self.last_error: str | None = None
        self._deaths = DeathTimes()
        self._lock = threading.Lock()

    def read(self) -> Reading:
        """Read the table once and count it.

        Raises:
            UndertakerError: the source could not provide a table.
        """
        with self._lock:
            return read_table(self.source(), self.top, deaths=self._deaths)

    def read_with_census(self) -> tuple[Reading, Census]:
        """Read the table once, count it, and take its census (what the HTML page shows).

        Raises:
            UndertakerError: the source could not provide a table.
        """
        with self._lock:
            snapshot = self.source()
            reading = read_table(snapshot, self.top, deaths=self._deaths)
        return reading, take_census(snapshot)

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family of one scrape (``prometheus_client`` calls this)."""
        start = time.perf_counter()
        reading: Reading | None = None
        try:
            reading = self.read()
        except UndertakerError as err:
            with self._lock:
                self.errors += 1  # the scrape still answers: errors and duration say why
                self.last_error = str(err)
        if reading is not None:
            yield from self._table_metrics(reading)
        yield from self._self_metrics(time.perf_counter() - start)

    def _table_metrics(self, r: Reading) -> Iterator[Metric]:
        yield _gauge(
            "zombies", "Zombie processes: dead, waiting for their parent to reap them.", r.zombies
        )
        parent = _gauge(
            "zombies_by_parent",
            "Zombies by the command name of the parent that must reap them (top N, then other).",
            labels=["parent"],
        )
        for name, count in r.by_parent:
            parent.add_metric([name], count)
        yield parent
        container = _gauge(
            "zombies_by_container",
            "Zombies by their parent's container, from its cgroup (top N, then other; "
            "none: not in a container).",
            # Not container and pod: Kubernetes scrape configs attach those to every
            # series (the exporter's own), and the clash would rename ours exported_*.
            labels=["container_id", "runtime", "pod_uid"],
        )
        for key, count in r.by_container:
            container.add_metric(list(key), count)
        yield container
        yield _gauge(
            "zombie_leaders",
            "Live processes whose leader thread exited (ps shows Zl): not zombies, not reapable.",
            r.leaders,
        )
        yield _gauge(
            "oldest_zombie_age_seconds",
            "How long the longest-waiting zombie has been dead (0 without zombies).",
            r.oldest_zombie_age,
        )
        states = _gauge(
            "processes",
            "Processes by the state letter of /proc/PID/stat (Z includes zombie leaders).",
            labels=["state"],
        )
        for letter in (*STATE_LETTERS, *sorted(set(r.states) - set(STATE_LETTERS))):
            states.add_metric([letter], r.states[letter])
        yield states
        yield _gauge("pids_used", "PIDs in use: one per live thread and per zombie.", r.pids_used)
        if r.pid_max is not None:
            yield _gauge("pid_max", "kernel.pid_max of the PID namespace read.", r.pid_max)
        if r.cgroup_pids is not None:
            yield _gauge(
                "cgroup_pids_current", "PIDs charged to the tightest pids cgroup.", r.cgroup_pids[0]
            )
            yield _gauge("cgroup_pids_limit", "pids.max of that cgroup.", r.cgroup_pids[1])
        yield _gauge("threads", "Live threads of the processes seen.", r.threads)
        if r.threads_max is not None:
            yield _gauge(
                "threads_max", "kernel.threads-max: the system-wide cap on tasks.", r.threads_max
            )
        if r.kernel_tasks is not None:
            yield _gauge(
                "kernel_tasks",
                "The kernel's task count, system-wide (/proc/loadavg).",
                r.kernel_tasks,
            )
        skipped = _gauge(
            "scan_skipped_processes",
            "Processes the scrape skipped: vanished (exited mid-scan) or unreadable (hidden).",
            labels=["reason"],
        )
        skipped.add_metric(["vanished"], r.vanished)
        skipped.add_metric(["unreadable"], r.unreadable)
        yield skipped
        if r.tasks_unseen is not None:
            yield _gauge(
                "tasks_unseen",
                "Tasks the kernel counts that the scan could not see (hidepid, other users); "
                "0 when nothing is hidden.",
                r.tasks_unseen,
            )
        yield _gauge(
            "view_complete",
            "1 when every process could be read; 0 means counts are lower bounds (run as root).",
            int(r.complete),
        )
        source = InfoMetricFamily(PREFIX + "table_source", "Where the process table comes from.")
        source.add_metric([], {"source": self.source.name})
        yield source
        yield _gauge(
            "table_age_seconds",
            "Age of the process table at this scrape (a scan: its duration so far).",
            max(time.time() - r.taken_at, 0.0),
        )
        counts = getattr(self.source, "counts", None)
        if counts is not None:  # an event-fed table (--events): what it saw and did
            yield from _event_metrics(r, counts)

    def _self_metrics(self, seconds: float) -> Iterator[Metric]:
        yield _gauge(
            "scrape_duration_seconds", "How long this scrape took to read the table.", seconds
        )
        yield CounterMetricFamily(
            PREFIX + "scrape_errors", "Scrapes that could not read the process table.", self.errors
        )
        build = InfoMetricFamily(PREFIX + "build", "The undertaker version serving these metrics.")
        build.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield build


def _event_metrics(r: Reading, counts: EventCounts) -> Iterator[Metric]:
    yield _gauge(
        "oldest_zombie_age_exact",
        "1 when the oldest zombie's age is the kernel's exit time (it died while the "
        "exporter listened), 0 when it is an estimate or there is no zombie.",
        int(r.oldest_zombie_exact),
    )
    yield _gauge(
        "table_full_scan_age_seconds",
        "Seconds since the event-fed table last agreed with a full scan: state letters "
        "of live processes may be this old.",
        r.full_scan_age,
    )
    events = CounterMetricFamily(
        PREFIX + "process_events", "Process events received from the kernel.", labels=["kind"]
    )
    events.add_metric(["fork"], counts.forks)
    events.add_metric(["exit"], counts.exits)
    events.add_metric(["change"], counts.changes)
    yield events
    yield CounterMetricFamily(
        PREFIX + "event_overflows",
        "Times the kernel dropped events (receive buffer full); each cost a full scan.",
        counts.overflows,
    )
    yield CounterMetricFamily(
        PREFIX + "table_full_scans", "Full scans of /proc by the event-fed table.", counts.scans
    )
    yield CounterMetricFamily(
        PREFIX + "table_corrections",
        "Processes a resync scan found otherwise than the events had left them.",
        counts.corrections,
    )


def make_registry(collector: ZombieCollector) -> CollectorRegistry:
    """A registry of our own holding only *collector* (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
