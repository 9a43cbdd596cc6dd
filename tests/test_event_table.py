"""The event-driven process table (issue 11): exact ages, what events cannot say, overflow.

Everything here uses the real proc connector and real processes: zombies the
test makes with ``os.fork``, a parent that dies to re-parent its child, a
burst that overflows a tiny receive buffer.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import fork_zombie, needs_events, needs_namespace, run_in_namespace
from undertaker.census import take_census
from undertaker.proc import EventTable, Snapshot, scan
from undertaker.testing import sleep_until

PR_SET_NAME = 15


@pytest.fixture
def table() -> Iterator[EventTable]:
    """A table that never resyncs on its own: whatever it knows came from events."""
    with EventTable(resync=1e9) as made:
        yield made


def _fork_zombie(code: int = 0) -> tuple[int, float]:
    """Fork a zombie (helpers.fork_zombie) and wait until /proc shows it Z."""
    pid, died = fork_zombie(code)
    assert sleep_until(lambda: _state(pid) == "Z")
    return pid, died


def _consistent(snap: Snapshot) -> None:
    """The views the table kept as it went equal those computed from the snapshot itself."""
    procs = list(snap.processes.values())
    assert snap.state_counts == Counter(p.state for p in procs)
    assert snap.pids_used == sum(p.threads or 1 for p in procs)
    order = sorted(procs, key=lambda p: (p.start_ticks, p.pid))
    assert snap.zombies == [p for p in order if p.is_zombie]
    assert snap.zombie_leaders == [p for p in order if p.is_zombie_leader]


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except FileNotFoundError:
        return None
    return data[data.rfind(b")") + 2 :][:1].decode()


@pytest.mark.smoke
@needs_events
def test_zombie_age_is_its_real_exit_time(table: EventTable) -> None:
    """A zombie made while the table listens has the kernel's exit time, within 50 ms."""
    pid, died = _fork_zombie(7)
    try:
        time.sleep(0.3)  # an estimate made later must not drift with the wait
        snap = table.snapshot()
        assert snap.source == "events"
        _consistent(snap)
        zombie = next(z for z in take_census(snap).zombies if z.process.pid == pid)
        assert zombie.exact
        assert zombie.exited_at is not None
        assert abs(zombie.exited_at - died) < 0.050
        assert snap.exit_times[pid] == zombie.exited_at
        assert zombie.status is not None
        assert zombie.status.exit_code == 7
        assert table.counts.scans == 1  # from events, not a rescan
    finally:
        os.waitpid(pid, 0)


@needs_events
def test_scan_ages_are_estimates() -> None:
    """The same zombie seen by a plain scan has an estimated, not exact, time of death."""
    pid, _ = _fork_zombie()
    try:
        snap = scan()
        assert snap.source == "scan"
        assert snap.exit_times == {}
        zombie = next(z for z in take_census(snap).zombies if z.process.pid == pid)
        assert not zombie.exact
    finally:
        os.waitpid(pid, 0)


@needs_events
def test_reaping_and_births_without_rescans(table: EventTable) -> None:
    """A reaped zombie leaves the table (no event says so); a new process enters it."""
    pid, _ = _fork_zombie()
    assert pid in {p.pid for p in table.snapshot().zombies}
    os.waitpid(pid, 0)
    snap = table.snapshot()
    assert pid not in snap.processes
    assert pid not in snap.exit_times
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(write_end)
        os.read(read_end, 1)  # EOF when the test closes its end
        os._exit(0)
    try:
        snap = table.snapshot()
        assert snap.processes[child].ppid == os.getpid()
        assert not snap.processes[child].is_zombie
    finally:
        os.close(write_end)
        os.close(read_end)
        os.waitpid(child, 0)
    snap = table.snapshot()
    assert child not in snap.processes
    _consistent(snap)
    assert table.counts.scans == 1


@needs_events
def test_orphan_is_read_again_under_its_new_parent(table: EventTable) -> None:
    """When a parent dies its child moves to a reaper without an event; the table follows."""
    read_end, write_end = os.pipe()
    hold_r, hold_w = os.pipe()  # the grandchild lives until hold_w closes
    middle = os.fork()
    if middle == 0:
        os.close(hold_w)
        grandchild = os.fork()
        if grandchild == 0:
            os.read(hold_r, 1)
            os._exit(0)
        os.write(write_end, str(grandchild).encode())
        os._exit(0)
    os.close(write_end)
    os.close(hold_r)
    grandchild = int(os.read(read_end, 32))
    os.close(read_end)
    try:
        os.waitpid(middle, 0)
        # The session's subreaper (conftest) is this process: the orphan comes here.
        assert sleep_until(lambda: _ppid(grandchild) == os.getpid())
        snap = table.snapshot()
        assert snap.processes[grandchild].ppid == os.getpid()
        assert middle not in snap.processes
        assert table.counts.scans == 1
    finally:
        os.close(hold_w)
        os.waitpid(grandchild, 0)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        data = stat.read()
    return int(data[data.rfind(b")") + 2 :].split()[1])


@needs_events
def test_new_name_comes_from_the_comm_event(table: EventTable) -> None:
    """A process that renames itself (PR_SET_NAME) shows its new name without a rescan."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(go_w)
        os.read(go_r, 1)
        ctypes.CDLL(None).prctl(PR_SET_NAME, b"renamed-by-test", 0, 0, 0)
        os.write(ready_w, b"x")
        os.read(go_r, 1)  # EOF when the test closes go_w
        os._exit(0)
    try:
        assert table.snapshot().processes[child].comm != "renamed-by-test"
        os.write(go_w, b"x")
        os.read(ready_r, 1)
        assert table.snapshot().processes[child].comm == "renamed-by-test"
    finally:
        for fd in (go_w, go_r, ready_r, ready_w):
            os.close(fd)
        os.waitpid(child, 0)
    assert table.counts.changes >= 1
    assert table.counts.scans == 1


@needs_events
def test_overflow_falls_back_to_a_rescan_with_exact_counts() -> None:
    """A burst into a tiny buffer loses events; the next snapshot rescans and is exact."""
    with EventTable(resync=1e9, rcvbuf=4096) as small:
        small.snapshot()
        scans, overflows = small.counts.scans, small.counts.overflows
        pids = [_fork_zombie()[0] for _ in range(150)]  # 300 events: far more than fit
        try:
            snap = small.snapshot()
            fresh = scan()
            assert small.counts.overflows == overflows + 1
            assert small.counts.scans == scans + 1
            mine = {p.pid for p in snap.zombies if p.ppid == os.getpid()}
            assert mine == set(pids)
            assert {p.pid for p in fresh.zombies if p.ppid == os.getpid()} == mine
            # Other programs may fork and exit between the two reads (the events
            # that would tell were lost too): whatever only the later scan has
            # must have started after our last fork, so the rescan missed nothing.
            newest = max(snap.processes[pid].start_ticks for pid in pids)
            for pid, proc in fresh.processes.items():
                before = snap.processes.get(pid)
                if before is None or before.start_ticks != proc.start_ticks:
                    assert proc.start_ticks >= newest, (pid, proc)
        finally:
            for pid in pids:
                os.waitpid(pid, 0)
        snap = small.snapshot()
        assert not set(pids) & set(snap.processes)
        _consistent(snap)


@needs_events
def test_fork_storm_loses_no_events_with_default_settings() -> None:
    """10,000 short-lived processes while nobody reads: 0 dropped with the default buffer."""
    storm = (
        "import os\n"
        "for _ in range(10000):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
    )
    with EventTable(resync=1e9) as table:
        table.snapshot()
        before = table.counts.forks, table.counts.exits
        start = time.monotonic()
        pid = os.posix_spawn(
            "/proc/self/exe", ["python", "-I", "-S", "-c", storm], dict(os.environ)
        )
        _, status = os.waitpid(pid, 0)
        took = time.monotonic() - start
        assert os.waitstatus_to_exitcode(status) == 0
        snap = table.snapshot()
        assert table.counts.overflows == 0
        assert table.counts.scans == 1
        assert table.counts.forks - before[0] >= 10_000
        assert table.counts.exits - before[1] >= 10_001
        assert pid not in snap.processes
        _consistent(snap)
        assert took < 120


@needs_events
def test_resync_reconciles_with_a_full_scan() -> None:
    """With resync 0 every snapshot is a full scan, and nothing needs correcting."""
    with EventTable(resync=0) as table:
        table.snapshot()
        table.snapshot()
        assert table.counts.scans == 3
        snap = table.snapshot()
        assert snap.table_age < 1.0
        assert snap.source == "events"


def test_other_roots_fall_back_to_scans() -> None:
    """A captured tree cannot be followed by events: the table says why and scans."""
    root = os.path.join(os.path.dirname(__file__), "fixtures", "proc")
    if not os.path.isdir(root):
        pytest.skip("no captured tree")
    with EventTable(root) as table:
        assert table.source == "scan"
        assert table.fallback is not None
        assert "not" in table.fallback
        assert table.fileno() == -1


@needs_namespace
def test_inside_a_pid_namespace_the_table_scans_and_says_why() -> None:
    """In a container the connector's PIDs are the host's: full scans, and the reason."""
    code = (
        "import json\n"
        "from undertaker.proc import EventTable\n"
        "with EventTable() as t:\n"
        "    s = t.snapshot()\n"
        "    print(json.dumps([t.source, t.fallback, s.source, len(s.processes)]))\n"
    )
    done = run_in_namespace(code)
    assert done.returncode == 0, done.stderr
    source, why, snap_source, count = __import__("json").loads(done.stdout)
    assert (source, snap_source) == ("scan", "scan")
    assert "initial PID namespace" in why
    assert count >= 1


_CENSUS_READS = r"""
import os, sys
from undertaker.census import take_census
from undertaker.proc import EventTable
from undertaker.testing import ZombieParent, ZombieSpec

with ZombieParent([ZombieSpec(code=2)] * 5) as before:
    with EventTable(resync=1e9) as table:
        with ZombieParent([ZombieSpec(code=3)] * 5) as after:
            table.snapshot()  # the table reads each new zombie once, here
            snap = table.snapshot()
            os.write(2, b"MARK census begins\n")
            census = take_census(snap)
            os.write(2, b"MARK census ends\n")
            mine = {z.process.pid: z for z in census.zombies}
            for pid in before.zombies + after.zombies:
                z = mine[pid]
                assert z.exited_at is not None and z.status is not None
                assert z.exact == (pid in after.zombies), pid
            print(" ".join(map(str, before.zombies + after.zombies)))
"""


@needs_events
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_census_of_an_event_snapshot_reads_nothing_per_zombie(tmp_path: Path) -> None:
    """Zombies the table has read are not read again: no open, stat or readlink of theirs."""
    log = tmp_path / "strace.log"
    strace = ["strace", "-qq", "-e", "trace=%file,write", "-e", "signal=none", "-o", str(log)]
    done = subprocess.run(
        [*strace, sys.executable, "-c", _CENSUS_READS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    zombies = done.stdout.split()
    assert len(zombies) == 10
    trace = log.read_text()
    during = trace[trace.index("MARK census begins") : trace.index("MARK census ends")]
    assert "/proc" in trace
    touched = [z for z in zombies if re.search(rf'"(/proc/)?{z}/', during)]
    assert touched == []


@needs_events
def test_a_stop_has_no_event_until_the_resync_scan() -> None:
    """SIGSTOP changes no event: the letter is stale until a resync reads the whole table."""
    hold_r, hold_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(hold_w)
        os.read(hold_r, 1)
        os._exit(0)
    os.close(hold_r)
    try:
        assert sleep_until(lambda: _state(child) == "S")  # blocked in read
        with EventTable(resync=1e9) as stale, EventTable(resync=0.5) as synced:
            assert stale.snapshot().processes[child].state == "S"
            assert synced.snapshot().processes[child].state == "S"
            os.kill(child, signal.SIGSTOP)  # our own child, not yet reaped
            assert sleep_until(lambda: _state(child) == "T")
            time.sleep(0.5)
            assert stale.snapshot().processes[child].state == "S"
            snap = synced.snapshot()
            assert snap.processes[child].state == "T"
            assert snap.table_age < 0.5
            assert synced.counts.scans == 2
            assert synced.counts.corrections == 0  # nothing the events should have said
    finally:
        os.kill(child, signal.SIGCONT)
        os.close(hold_w)
        os.waitpid(child, 0)


@needs_namespace
def test_top_in_a_pid_namespace_says_it_scans_and_why() -> None:
    """top inside a container says, in its header, that it scans and why."""
    code = "from undertaker.cli import main; raise SystemExit(main(['top', '-n', '1']))"
    done = run_in_namespace(code)
    assert done.returncode == 0, done.stderr
    assert "source: /proc scan each frame (not in the initial PID namespace" in done.stdout
