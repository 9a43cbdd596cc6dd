"""spawn() and Child: pidfd waits, timeouts, asyncio, terminate, forgotten children, pdeathsig."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from undertaker import (
    NoSuchProcess,
    StatusLost,
    TimeoutExpired,
    WaitStatus,
    children,
    spawn,
    wait_for_exit,
)
from undertaker.pidfd import pidfd_open, wait_readable
from undertaker.testing import ZombieParent, ZombieSpec, proc_state, sleep_until

# A parent that spawns `sleep 60` (with or without a death signal), reports the
# sleeper's PID, then waits to be killed.
PARENT = r"""
import signal, sys
from undertaker import spawn
sig = int(sys.argv[1]) or None
child = spawn(["sleep", "60"], parent_death_signal=sig)
print(child.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.smoke
def test_wait_returns_the_decoded_status() -> None:
    """wait() reaps through the pidfd and decodes the status; returncode follows Popen."""
    child = spawn(["sh", "-c", "exit 3"])
    assert child.wait(10) == WaitStatus.exited_with(3)
    assert child.returncode == 3
    assert proc_state(child.pid) is None
    assert repr(child) == f"<Child pid={child.pid} exited 3>"


@pytest.mark.smoke
def test_wait_timeout_then_terminate() -> None:
    """A timeout raises without killing; terminate() ends it with SIGTERM."""
    child = spawn(["sleep", "30"])
    with pytest.raises(TimeoutExpired):
        child.wait(0.05)
    assert child.poll() is None
    assert child.terminate(grace=5) == WaitStatus.killed_by(signal.SIGTERM)


def test_terminate_escalates_to_sigkill() -> None:
    """A child ignoring SIGTERM is killed after the grace period."""
    child = spawn(
        [
            sys.executable,
            "-c",
            (
                "import signal,time; signal.signal(15, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(30)"
            ),
        ],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    started = time.monotonic()
    assert child.terminate(grace=0.2) == WaitStatus.killed_by(signal.SIGKILL)
    assert time.monotonic() - started < 10
    child.close()


@pytest.mark.smoke
def test_child_is_awaitable() -> None:
    """``await child`` waits on the event loop; wait_async honours a timeout."""

    async def main() -> tuple[WaitStatus, bool]:
        sleeper = spawn(["sleep", "30"])
        try:
            await sleeper.wait_async(timeout=0.05)
        except TimeoutExpired:
            timed_out = True
        sleeper.kill()
        await sleeper
        return await spawn(["sh", "-c", "sleep 0.05; exit 4"]), timed_out

    status, timed_out = asyncio.run(main())
    assert status == WaitStatus.exited_with(4)
    assert timed_out


def test_forgotten_child_is_reaped() -> None:
    """A Child dropped without wait() is reaped when it exits: no zombie lingers."""
    child = spawn(["sh", "-c", "sleep 0.2; exit 6"])
    pid = child.pid
    del child
    gc.collect()
    try:
        assert sleep_until(lambda: proc_state(pid) is None, 10)
    finally:
        # Stop the janitor thread it started, so later tests fork a one-thread process.
        if children._janitor is not None:
            children._janitor.stop()


def test_forgotten_child_that_exited_first_is_reported() -> None:
    """A child already exited when dropped is reaped at hand-over, and reported like any other.

    The janitor reaps such a child before it reaches manage(); it must still go
    to history and on_reap, or what the janitor reports would depend on timing.
    """
    janitor = children._janitor_reaper()
    reported: list[tuple[int, str]] = []
    janitor.on_reap = lambda reaped: reported.append((reaped.pid, threading.current_thread().name))
    try:
        exited = spawn(["sh", "-c", "exit 5"])
        running = spawn(["sh", "-c", "read line; exit 7"], stdin=subprocess.PIPE)
        pids = exited.pid, running.pid
        assert sleep_until(lambda: proc_state(pids[0]) == "Z", 10)  # exited before the drop
        assert running.stdin is not None
        stdin, running.stdin = running.stdin, None
        del exited, running
        gc.collect()
        stdin.close()  # `running` exits only now, after it was dropped
        assert sleep_until(lambda: len(reported) == 2, 10), reported
        assert sorted(reported) == sorted((pid, "undertaker-reaper") for pid in pids)
        statuses = {record.pid: record.status for record in janitor.history}
        assert statuses == {pids[0]: WaitStatus.exited_with(5), pids[1]: WaitStatus.exited_with(7)}
        assert all(proc_state(pid) is None for pid in pids)
    finally:
        janitor.stop()  # so later tests fork a one-thread process


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_waited_children_keep_no_pidfd_open() -> None:
    """50 children spawned, waited or polled, and kept as objects: no descriptor piles up."""
    kept = [spawn(["true"])]  # the first spawn loads subprocess; count after it
    kept[0].wait(10)
    before = _open_fds()
    for i in range(50):
        child = spawn(["sh", "-c", f"exit {i % 7}"])
        if i % 2:
            assert child.wait(10) == WaitStatus.exited_with(i % 7)
        else:
            assert sleep_until(lambda c=child: c.poll() is not None, 10)
        kept.append(child)
    assert _open_fds() == before
    assert [c.returncode for c in kept[1:]] == [i % 7 for i in range(50)]
    assert all(proc_state(c.pid) is None for c in kept)  # reaped, not just closed


# Children dropped in a reference cycle are found only by the garbage collector,
# which runs their finalizers on whatever thread it interrupts. Here it runs
# (1) on a thread holding both locks the janitor path takes, and (2) on the
# janitor's own thread. Each `sleep` is then killed and must be reaped.
CYCLES = r"""
import gc, json, os, signal, threading
from undertaker import children, spawn
from undertaker.testing import proc_state, sleep_until

def dropped_in_a_cycle():
    child = spawn(["sleep", "30"])
    child.me = child  # only gc.collect() can free it
    return child.pid, os.pidfd_open(child.pid)

def kill_and_check(pid, fd):
    signal.pidfd_send_signal(fd, signal.SIGKILL)
    os.close(fd)
    return sleep_until(lambda: proc_state(pid) is None, 10)

gc.disable()  # collections happen where we say, nowhere else
out = {}
janitor = children._janitor_reaper()
pid, fd = dropped_in_a_cycle()
with children._janitor_lock, janitor._lock:  # as during a janitor start, or a pass
    gc.collect()
out["collected_under_locks"] = True
out["reaped_1"] = kill_and_check(pid, fd)

threads = []
trigger_pid = []
def collect_here(reaped):
    # Only on the trigger's reap: the report of the first child may still be
    # on its way (on_reap runs after the reap that kill_and_check saw).
    if reaped.pid in trigger_pid and not threads:
        threads.append(threading.current_thread().name)
        gc.collect()
janitor.on_reap = collect_here
pid, fd = dropped_in_a_cycle()
trigger = spawn(["true"])
trigger_pid.append(trigger.pid)
# Dropped, not in a cycle: the janitor reaps it and runs collect_here on its
# thread, whether `true` exits before the hand-over or after (both reported).
del trigger
out["gc_ran_on"] = sleep_until(lambda: bool(threads), 10) and threads[0]
out["reaped_2"] = kill_and_check(pid, fd)
janitor.stop()
print(json.dumps(out))
"""


def test_finalizer_under_gc_takes_no_lock() -> None:
    """A Child in a reference cycle collected where the janitor's locks are held: no deadlock."""
    done = subprocess.run(
        [sys.executable, "-c", CYCLES], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "collected_under_locks": True,
        "reaped_1": True,
        "gc_ran_on": "undertaker-reaper",
        "reaped_2": True,
    }


def test_context_manager_terminates() -> None:
    """Leaving the block stops a child that still runs."""
    with spawn(["sleep", "30"]) as child:
        pass
    assert child.status == WaitStatus.killed_by(signal.SIGTERM)


def test_status_lost_when_someone_else_reaps() -> None:
    """If other code reaps our child, wait() says the status is lost instead of inventing 0."""
    child = spawn(["sh", "-c", "exit 2"])
    os.waitpid(child.pid, 0)  # the thief
    with pytest.raises(StatusLost, match="reaped by other code"):
        child.wait(10)


def _start_and_kill_parent(sig: int) -> int:
    """Run PARENT, SIGKILL it once its child runs; return the child's pidfd."""
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, str(int(sig))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        fd = pidfd_open(int(parent.stdout.readline()))
        parent.kill()
    return fd


def _reap_adopted(fd: int) -> WaitStatus:
    """The orphan was adopted by the test session (a subreaper): reap it by pidfd."""
    result = os.waitid(os.P_PIDFD, fd, os.WEXITED)
    assert result is not None
    return WaitStatus.from_waitid(result)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_parent_death_signal_kills_child_with_parent(sig: int) -> None:
    """spawn(..., parent_death_signal=S): SIGKILL the parent and the child dies of S."""
    fd = _start_and_kill_parent(sig)
    try:
        assert wait_readable(fd, 10), "the child outlived its parent"
        assert _reap_adopted(fd) == WaitStatus.killed_by(sig)
    finally:
        os.close(fd)


def test_without_parent_death_signal_child_survives() -> None:
    """Negative control: without the signal, the child outlives its killed parent."""
    fd = _start_and_kill_parent(0)
    try:
        assert not wait_readable(fd, 0.5)
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        assert _reap_adopted(fd) == WaitStatus.killed_by(signal.SIGKILL)
    finally:
        os.close(fd)


def test_parent_death_signal_fires_when_the_spawning_thread_exits() -> None:
    """The documented race: the signal follows the thread that forked, not the process."""
    holder: list[object] = []
    thread = threading.Thread(
        target=lambda: holder.append(spawn(["sleep", "30"], parent_death_signal=signal.SIGTERM))
    )
    thread.start()
    thread.join()
    (child,) = holder
    assert child.wait(10) == WaitStatus.killed_by(signal.SIGTERM)  # type: ignore[attr-defined]


def test_wait_for_exit_on_a_non_child() -> None:
    """wait_for_exit sees a zombie that is not ours exit, and reads its kept status."""
    with ZombieParent([ZombieSpec(code=9)], sleepers_count=1) as parent:
        (zombie,) = parent.zombies
        (sleeper,) = parent.sleepers
        assert wait_for_exit(zombie, timeout=5) == WaitStatus.exited_with(9)
        with pytest.raises(TimeoutExpired):
            wait_for_exit(sleeper, timeout=0.05)
    with pytest.raises(NoSuchProcess):
        wait_for_exit(zombie, timeout=1)


def _handed_over() -> bool:
    """The janitor runs and has taken every closed child off its queue."""
    janitor = children._janitor
    return janitor is not None and janitor.running and not children._forgotten


def test_wait_and_terminate_after_close() -> None:
    """close() hands the child to the janitor, yet wait() and terminate() still work."""
    try:
        child = spawn(["sleep", "30"])
        child.close()
        assert sleep_until(_handed_over, 10)
        with pytest.raises(TimeoutExpired):
            child.wait(0.05)
        assert child.terminate(grace=5) == WaitStatus.killed_by(signal.SIGTERM)
        quick = spawn(["sh", "-c", "sleep 0.2; exit 4"])
        quick.close()
        assert sleep_until(_handed_over, 10)
        assert quick.wait(10) == WaitStatus.exited_with(4)
        assert child.returncode == -signal.SIGTERM
        assert proc_state(child.pid) is None
        assert proc_state(quick.pid) is None
    finally:
        if children._janitor is not None:
            children._janitor.stop()  # so later tests fork a one-thread process


def test_wait_after_close_when_the_janitor_stopped() -> None:
    """A janitor stopped before the child exits leaves it unreaped: wait() reaps it then."""
    child = spawn(["sh", "-c", "sleep 0.3; exit 5"])
    child.close()
    assert sleep_until(_handed_over, 10)
    assert children._janitor is not None
    children._janitor.stop()
    assert child.wait(10) == WaitStatus.exited_with(5)
    assert proc_state(child.pid) is None


@pytest.mark.parametrize("timeout", [float("inf"), 1e300, 1e10])
def test_infinite_and_huge_timeouts(timeout: float) -> None:
    """wait() and wait_async() accept infinity and any long timeout, like None."""
    child = spawn(["sh", "-c", "sleep 0.1; exit 2"])
    assert child.wait(timeout) == WaitStatus.exited_with(2)
    sleeper = spawn(["sh", "-c", "sleep 0.1; exit 3"])
    assert asyncio.run(sleeper.wait_async(timeout)) == WaitStatus.exited_with(3)
    fd = pidfd_open(os.getpid())
    try:
        with pytest.raises(ValueError, match="NaN"):
            wait_readable(fd, float("nan"))
    finally:
        os.close(fd)
