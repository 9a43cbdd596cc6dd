"""``undertaker exporter --events`` (issue 11): a real server, real scrapes, a real zombie.

The exporter runs on the host (events name the initial PID namespace's
PIDs); the zombie is a child of this test, made after the exporter
subscribed, so its time of death is the kernel's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from exporter_helpers import parse_exposition
from helpers import UNDERTAKER, fork_zombie, needs_events, needs_namespace, run_in_namespace
from undertaker.testing import sleep_until

pytest.importorskip("prometheus_client")


@pytest.fixture
def server() -> Iterator[str]:
    """An exporter following events on a free loopback port; its base URL."""
    proc = subprocess.Popen(
        [*UNDERTAKER, "exporter", "--events", "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("undertaker exporter: listening on http://127.0.0.1:"), line
        yield line.split()[-1].removesuffix("/metrics")
        proc.send_signal(signal.SIGTERM)  # handled: it unsubscribes, then exits 0
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(
                signal.SIGINT
            )  # never SIGKILL a subscriber: see test_event_unsubscribe
            proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310  (loopback)
        return str(response.read().decode())


def _duration(text: str) -> float:
    """Seconds from the page's ``850ms`` or ``2s``."""
    found = re.fullmatch(r"(\d+)(ms|s)", text)
    assert found, text
    return int(found[1]) / (1000 if found[2] == "ms" else 1)


@needs_events
def test_scrape_reports_events_and_an_exact_age(server: str) -> None:
    """A zombie dying while the exporter runs: source events, its age exact to 50 ms."""
    pid, died = fork_zombie(9)
    try:
        me = re.escape(str(os.getpid()))
        row = re.compile(
            rf'<tr><td class="n">{me}</td><td>[^<]*</td><td class="n">1</td><td>([^<]*)</td>'
        )

        def seen() -> bool:
            return bool(row.search(_get(server + "/")))

        assert sleep_until(seen, 10)
        before = time.time()
        page = _get(server + "/")
        after = time.time()
        metrics = parse_exposition(_get(server + "/metrics"))
        match = row.search(page)
        assert match is not None
        oldest = match[1]
        assert not oldest.startswith("~")  # exact: no estimate mark
        age = _duration(oldest)
        assert before - died - 0.050 <= age <= after - died + 0.050
        assert metrics['undertaker_table_source_info{source="events"}'] == 1
        assert metrics["undertaker_event_overflows_total"] == 0
        assert metrics["undertaker_zombies"] >= 1
        assert metrics['undertaker_process_events_total{kind="exit"}'] >= 1
        if metrics["undertaker_zombies"] == 1:  # ours is then the oldest
            assert metrics["undertaker_oldest_zombie_age_exact"] == 1
    finally:
        os.waitpid(pid, 0)


@needs_namespace
def test_events_in_a_pid_namespace_says_so_once_and_scans() -> None:
    """In a container, --events notes why once on stderr, and the metrics say scan."""
    code = (
        "import subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'undertaker', 'exporter', '--events',"
        " '--once'], capture_output=True, text=True)\n"
        "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr)\n"
        "raise SystemExit(done.returncode)\n"
    )
    done = run_in_namespace(code)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line]
    assert len(notes) == 1
    assert notes[0].startswith("undertaker exporter: note: --events: not in the initial PID")
    metrics = parse_exposition(done.stdout)
    assert metrics['undertaker_table_source_info{source="scan"}'] == 1
