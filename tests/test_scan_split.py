"""scan(split=True): half the table read by a forked helper, the same records.

Every fork here is real; the helper's PID is checked to differ from ours, so
a split that silently fell back to one process does not pass for one.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from helpers import needs_namespace, run_in_namespace
from undertaker.proc import _split, scan
from undertaker.proc._scan import _add_plain, _read_table
from undertaker.proc._system import boot_time


def _reaped(readers: list[int]) -> bool:
    """Whether the helper among *readers* is no longer our child, not even a zombie.

    Only its PID is checked: other tests' children may still be about.
    """
    found: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as kids:
            found.update(int(pid) for pid in kids.read().split())
    return not found & (set(readers) - {os.getpid()})


@contextmanager
def _reader(fail_in_helper: bool = False) -> Iterator[tuple[object, list[int]]]:
    """The scan's own loop over /proc, noting in a pipe which process read how many names."""
    me = os.getpid()
    dir_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    note_r, note_w = os.pipe()
    readers: list[int] = []

    def read(names: list[str]) -> _split.Table:
        os.write(note_w, f"{os.getpid()} {len(names)}\n".encode())
        if fail_in_helper and os.getpid() != me:
            raise RuntimeError("the helper fails")
        return (*_read_table(names, dir_fd, boot_time("/proc"), owners=False), {})

    try:
        yield read, readers
    finally:
        os.close(note_w)
        with os.fdopen(note_r) as notes:
            readers += [int(line.split()[0]) for line in notes]
        os.close(dir_fd)


def test_the_helper_reads_half_and_the_records_arrive_intact() -> None:
    names = os.listdir("/proc")
    with _reader() as (read, readers):
        procs, keys, _, _, _ = _split.read_split(names, read, _add_plain)  # type: ignore[arg-type]
    assert len(readers) == 2
    assert readers[0] != readers[1]
    assert os.getpid() in readers
    single = scan(owners=False)
    assert len(procs.keys() & single.processes.keys()) > len(single.processes) // 2
    for pid in (1, os.getpid(), os.getppid()):  # from both halves: names alternate
        mine, theirs = single.processes[pid], procs[pid]
        assert (theirs.pid, theirs.comm, theirs.ppid, theirs.start_ticks) == (
            mine.pid,
            mine.comm,
            mine.ppid,
            mine.start_ticks,
        )
        assert type(theirs) is type(mine)
    assert all(procs[pid].state == "Z" for pid in keys)
    assert _reaped(readers)


def test_a_failing_helper_leaves_its_half_to_the_scan() -> None:
    names = os.listdir("/proc")
    with _reader(fail_in_helper=True) as (read, readers):
        procs, _, _, _, _ = _split.read_split(names, read, _add_plain)  # type: ignore[arg-type]
    # The helper started and failed; we read our half, then the helper's.
    assert sorted(readers, key=lambda pid: pid == os.getpid()) == [
        next(pid for pid in readers if pid != os.getpid()),
        os.getpid(),
        os.getpid(),
    ]
    assert 1 in procs
    assert os.getpid() in procs
    assert _reaped(readers)


@pytest.mark.parametrize("disposition", ["ignore", "reaping handler"])
def test_sigchld_ignored_or_reaped_by_the_program(disposition: str) -> None:
    reaped: list[int] = []

    def handler(_sig: int, _frame: object) -> None:
        try:
            reaped.append(os.waitpid(-1, os.WNOHANG)[0])
        except ChildProcessError:
            pass

    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN if disposition == "ignore" else handler)
    try:
        names = os.listdir("/proc")
        with _reader() as (read, readers):
            procs, _, _, _, _ = _split.read_split(names, read, _add_plain)  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert len(set(readers)) == 2
    assert 1 in procs
    assert _reaped(readers)


def test_no_split_beside_another_thread() -> None:
    """A fork beside a running thread could copy a lock it holds: never then."""
    assert _split.worth_splitting(_split.MIN_ENTRIES) == (len(os.sched_getaffinity(0)) > 1)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not _split.worth_splitting(100 * _split.MIN_ENTRIES)
    finally:
        stop.set()
        thread.join()
    assert not _split.worth_splitting(_split.MIN_ENTRIES - 1)


_LARGE = """
import json, os, sys
from undertaker.census import take_census
from undertaker.proc import scan
from undertaker.proc import _split
from undertaker.testing import populate
parents = populate(3600, 300, 12)
try:
    names = [n for n in os.listdir("/proc") if n.isdigit()]
    assert _split.worth_splitting(len(names)) or len(os.sched_getaffinity(0)) < 2
    one, two = scan(), scan(split=True)
    three = scan(split=True, zombie_reads=True)
    plain, pre = take_census(one), take_census(three)
    by_pid = {z.process.pid: z for z in plain.zombies}
    kids = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            kids += f.read().split()
    print(json.dumps({
        "entries": len(names),
        "same": one.processes == two.processes,
        "keys": dict(one.zombie_keys) == dict(two.zombie_keys),
        "zombies": [len(one.zombies), len(two.zombies)],
        "counts": [one.unreadable, two.unreadable],
        "extra_children": len(kids) - len(parents),
        "reads": len(three.zombie_reads),
        "reads_none_without": len(one.zombie_reads) + len(two.zombie_reads),
        "census_zombies": [len(plain.zombies), len(pre.zombies)],
        "nspid": all(z.nspid == (z.process.pid,) for z in pre.zombies),
        # the census used what the scan read: the very same floats
        "used": all(z.exited_at == three.zombie_reads[z.process.pid][1] for z in pre.zombies),
        "age_gap": max(abs(z.exited_at - by_pid[z.process.pid].exited_at) for z in pre.zombies),
    }))
finally:
    for p in parents:
        p.close()
"""


@needs_namespace
def test_a_large_table_scanned_split_equals_the_single_scan() -> None:
    """3,600 processes in a private namespace: every record and zombie key identical."""
    done = run_in_namespace(_LARGE, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["entries"] >= _split.MIN_ENTRIES
    assert report["same"]
    assert report["keys"]
    assert report["zombies"] == [300, 300]
    assert report["counts"] == [0, 0]
    assert report["extra_children"] == 0
    # With zombie_reads, both halves read their zombies; the census reuses them.
    assert report["reads"] == 300
    assert report["reads_none_without"] == 0
    assert report["census_zombies"] == [300, 300]
    assert report["nspid"]
    assert report["used"]
    assert report["age_gap"] < 0.02  # two calibrations of the same clocks


def test_the_clock_is_calibrated_before_the_fork_on_every_cpu() -> None:
    """Both copies inherit one calibration: neither moves onto the CPU the other uses."""
    from undertaker.proc._scan import _CALIBRATE_AHEAD, _calibrated  # noqa: PLC0415

    cpus = os.sched_getaffinity(0)
    clock = _calibrated("/proc")
    if len(cpus) > _CALIBRATE_AHEAD:
        assert clock is None
        return
    assert clock is not None
    assert set(clock._offsets) == cpus
    assert all(offset is not None for offset in clock._offsets.values())
    assert os.sched_getaffinity(0) == cpus  # put back where it was
