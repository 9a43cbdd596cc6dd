"""The scanner against real processes on the live system."""

from __future__ import annotations

import os
import signal
import time

import pytest

from undertaker.proc import is_same_process, read_cmdline, read_status, scan
from undertaker.testing import ZombieLeader, ZombieParent, ZombieSpec

HOSTILE_NAMES = ["a) Z 1 (b", "((", "))", " sp ace ", "new\nline", "1 2 3 4 5", ") R 0"]


@pytest.mark.smoke
def test_scan_sees_itself() -> None:
    """Our own process appears with the right parent, uid and a running state."""
    assert scan(owners=False).processes[os.getpid()].uid is None
    snap = scan()
    me = snap.processes[os.getpid()]
    assert me.ppid == os.getppid()
    assert me.uid == os.geteuid()
    assert me.state in "RS"
    assert me.tgid == os.getpid()
    assert not me.is_zombie


@pytest.mark.smoke
def test_zombies_with_exit_codes_and_signals() -> None:
    """Each zombie is found under its parent with the exit status the kernel kept."""
    specs = [ZombieSpec(code=7), ZombieSpec(code=0), ZombieSpec(signal=signal.SIGKILL)]
    with ZombieParent(specs) as parent:
        snap = scan()
        found = {p.pid: p for p in snap.zombies if p.ppid == parent.pid}
        assert sorted(found) == sorted(parent.zombies)
        codes = [found[pid].exit_code for pid in parent.zombies]
        assert codes == [7 << 8, 0, signal.SIGKILL]
        for pid in parent.zombies:
            assert found[pid].state == "Z"
            assert found[pid].threads == 1
            assert found[pid].uid == os.geteuid()
    assert all(not os.path.exists(f"/proc/{pid}") for pid in parent.zombies)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_comm_is_parsed_exactly(name: str) -> None:
    """Names with parentheses, spaces, newlines or fake fields do not shift the fields."""
    with ZombieParent([ZombieSpec(code=42, name=name)], name=name) as parent:
        snap = scan()
        zombie = snap.processes[parent.zombies[0]]
        assert zombie.comm == name
        assert zombie.ppid == parent.pid
        assert zombie.state == "Z"
        assert zombie.exit_code == 42 << 8
        assert snap.processes[parent.pid].comm == name
        assert snap.processes[parent.pid].state in "RS"


def test_zombie_leader_is_alive_not_a_zombie() -> None:
    """A leader that called pthread_exit shows Z but is listed apart, with its live threads."""
    with ZombieLeader() as leader:
        snap = scan()
        proc = snap.processes[leader.pid]
        assert proc.state == "Z"
        assert proc.threads == 2
        assert not proc.is_zombie
        assert proc.is_zombie_leader
        assert leader.pid in [p.pid for p in snap.zombie_leaders]
        assert leader.pid not in [p.pid for p in snap.zombies]


def test_start_time_identifies_a_process() -> None:
    """PID plus start ticks names one process; the wall-clock start is near now."""
    with ZombieParent([ZombieSpec(code=1)]) as parent:
        snap = scan()
        proc = snap.processes[parent.pid]
        assert is_same_process(proc.pid, proc.start_ticks)
        assert not is_same_process(proc.pid, proc.start_ticks + 1)
        assert abs(proc.started - snap.taken_at) < 60
    assert not is_same_process(proc.pid, proc.start_ticks)


def test_on_demand_status_and_cmdline() -> None:
    """status and cmdline are read on demand; a zombie has no command line."""
    with ZombieParent([ZombieSpec(code=1)], block_sigchld=True) as parent:
        status = read_status(parent.pid)
        assert status.ppid == os.getpid()
        assert status.sig_blk & (1 << (signal.SIGCHLD - 1))
        cmdline = read_cmdline(parent.pid)
        assert cmdline is not None
        assert cmdline[1:3] == ["-I", "-S"]
        assert read_cmdline(parent.zombies[0]) is None
        zstatus = read_status(parent.zombies[0])
        assert zstatus.state == "Z"


def test_exit_time_estimate_brackets_the_real_death() -> None:
    """The estimated time of death falls between the fork and the ready report."""
    from undertaker.census import take_census  # noqa: PLC0415

    before = time.time()
    with ZombieParent([ZombieSpec(code=1)] * 3) as parent:
        after = time.time()
        time.sleep(0.3)  # let the zombies age, so age and start-time differ clearly
        census = take_census(scan(), lambda p: p.ppid == parent.pid)
        assert len(census.zombies) == 3
        for zombie in census.zombies:
            assert zombie.exited_at is not None
            # 20 ms slack: the estimate is good to a scheduler tick or two
            assert before - 0.02 <= zombie.exited_at <= after + 0.02
        assert census.parents[0].oldest.since <= after + 0.02


def test_a_process_gone_between_listing_and_reading_is_skipped() -> None:
    """A PID listed but reaped before its files are read counts as vanished."""
    from undertaker.proc._scan import _read_table  # noqa: PLC0415

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # gone now, as if it exited mid-scan
    dir_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        table, _, unreadable, vanished = _read_table(
            [str(pid), str(os.getpid())], dir_fd, 0.0, owners=True
        )
    finally:
        os.close(dir_fd)
    assert (vanished, unreadable) == (1, 0)
    assert list(table) == [os.getpid()]
