"""reap_via_ptrace on the real kernel: the zombies go, the parent does not notice.

Every parent here is a Python process this test starts (tests/reap_parents.py);
nothing else is ever traced.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers import needs_namespace, run_in_namespace
from undertaker.remedy import (
    LiveZombieLeader,
    NotAZombie,
    ParentRefused,
    plan_ptrace_reap,
    reap_via_ptrace,
)
from undertaker.testing import ZombieLeader, ZombieParent, ZombieSpec, proc_state, sleep_until

PARENT = str(Path(__file__).with_name("reap_parents.py"))
# What /proc/PID/syscall shows once each mode blocks (x86_64 numbers).
BLOCKED_IN = {
    "sleep": {"230"},  # clock_nanosleep
    "waitpid": {"230"},
    "signals": {"230"},
    "nanosleep": {"230", "35"},  # clock_nanosleep or nanosleep, relative
    "accept": {"43", "288"},  # accept, accept4
    "pipe": {"0"},  # read
    "handler": {"0"},
    "select": {"270", "23"},  # pselect6, select
    "epoll": {"232", "281"},  # epoll_wait, epoll_pwait
    "threads": {"230", "running"},  # the main thread spins or sleeps
    "busy": {"running"},
    "waitlive": {"61", "247"},  # wait4, waitid
}


def _syscall(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/syscall") as sc:
            return sc.read().split()[0]
    except (OSError, IndexError):
        return "?"


class Parent:
    """A started reap_parents.py, its READY report, and a way to read its RESULT."""

    def __init__(self, mode: str, zombies: int) -> None:
        self.proc = start([sys.executable, PARENT, mode, str(zombies)])
        assert self.proc.stdout is not None
        self.ready: dict[str, Any] = json.loads(self.proc.stdout.readline())
        self.pid: int = self.ready["pid"]
        self.zombies: list[int] = self.ready["zombies"]
        wanted = BLOCKED_IN[mode]
        assert sleep_until(lambda: _syscall(self.pid) in wanted, 5), _syscall(self.pid)

    def result(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert self.proc.wait(10) == 0
        return dict(json.loads(line))

    def close(self) -> None:
        end(self.proc)


def start(argv: list[str]) -> subprocess.Popen[str]:
    """Start *argv* with its stdin and stdout as text pipes to us."""
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def end(proc: subprocess.Popen[str]) -> None:
    """Kill *proc* if it still runs (our child, not reaped: the PID is safe); close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


@contextmanager
def parent(mode: str, zombies: int = 3) -> Iterator[Parent]:
    started = Parent(mode, zombies)
    try:
        yield started
    finally:
        started.close()


def reap_all(p: Parent) -> None:
    """Reap every zombie of *p*; check each is gone and its exit status was kept."""
    result = reap_via_ptrace(p.pid, p.zombies)
    assert result.reaped == p.zombies
    for i, outcome in enumerate(result.outcomes):
        assert outcome.status is not None
        assert outcome.status.exit_code == 3 + i
        assert proc_state(outcome.pid) is None
    assert proc_state(p.pid) in {"S", "R"}
    assert max(result.stops) < 1.0


def _unharmed(report: dict[str, Any], zombies: list[int]) -> None:
    """The parent's own waits for the reaped zombies got ECHILD; its live child is intact."""
    assert report["waits"] == {str(z): "ECHILD" for z in zombies}
    assert report["other"] == 5 << 8


@pytest.mark.parametrize("mode", ["sleep", "waitpid"])
def test_sleeping_parent_keeps_its_full_sleep(mode: str) -> None:
    """time.sleep(1) interrupted by the reap still sleeps one second, and returns None."""
    with parent(mode) as p:
        reap_all(p)
        report = p.result()
    assert report["result"] is None
    assert 0.99 <= report["duration"] < 2.0
    _unharmed(report, p.zombies)


def test_relative_nanosleep_resumes_with_what_remained() -> None:
    """libc nanosleep(1 s), reaped half-way: returns 0 after 1 s in all, not 1.5 s, not EINTR.

    The kernel resumes it through restart_syscall only if the saved registers
    (orig_rax, and -ERESTART_RESTARTBLOCK in rax) come back verbatim.
    """
    with parent("nanosleep") as p:
        time.sleep(0.5)  # let half of it pass: a restart from scratch would show
        reap_all(p)
        report = p.result()
    assert report["result"] == [0, 0]
    assert 0.99 <= report["duration"] < 1.45
    _unharmed(report, p.zombies)


def test_parent_in_accept_accepts_the_later_connection() -> None:
    """A parent blocked in accept() gets the connection made after the reap."""
    with parent("accept") as p:
        reap_all(p)
        with socket.create_connection(("127.0.0.1", p.ready["port"]), timeout=5) as conn:
            conn.sendall(b"hello")
        report = p.result()
    assert report["result"] == "hello"
    _unharmed(report, p.zombies)


def test_parent_reading_a_pipe_reads_the_later_data() -> None:
    """A parent blocked in read() on a pipe reads what is written after the reap."""
    with parent("pipe") as p:
        reap_all(p)
        assert p.proc.stdin is not None
        p.proc.stdin.write("data\n")
        p.proc.stdin.flush()
        report = p.result()
    assert report["result"] == "data\n"
    _unharmed(report, p.zombies)


@pytest.mark.parametrize("mode", ["select", "epoll"])
def test_parent_in_select_or_epoll_times_out_as_before(mode: str) -> None:
    """select/epoll with a 1 s timeout still time out empty after about 1 s."""
    with parent(mode) as p:
        reap_all(p)
        report = p.result()
    assert report["result"] == ([0, 0, 0] if mode == "select" else [])
    assert 0.99 <= report["duration"] < 2.0
    _unharmed(report, p.zombies)


@pytest.mark.parametrize("mode", ["busy", "threads"])
def test_busy_and_multithreaded_parents_compute_correctly(mode: str) -> None:
    """A parent spinning in Python (alone, or with two more threads) computes right."""
    with parent(mode) as p:
        reap_all(p)
        report = p.result()
    assert report["result"] == [True] * (1 if mode == "busy" else 3)
    assert 0.99 <= report["duration"] < 2.0
    _unharmed(report, p.zombies)


def test_stopped_parent_stays_stopped_and_resumes() -> None:
    """A SIGSTOPped parent is reaped for, stays stopped (T), and goes on after SIGCONT."""
    with parent("sleep") as p:
        os.kill(p.pid, signal.SIGSTOP)  # our own child, not reaped: the PID is safe
        assert sleep_until(lambda: proc_state(p.pid) == "T")
        result = reap_via_ptrace(p.pid, p.zombies)
        assert result.reaped == p.zombies
        assert proc_state(p.pid) == "T"
        os.kill(p.pid, signal.SIGCONT)
        report = p.result()
    assert report["result"] is None
    _unharmed(report, p.zombies)


def test_signals_arriving_while_stopped_are_delivered_after() -> None:
    """SIGUSR1s sent during the stops are held and delivered: the handler runs, the sleep ends.

    A signal-delivery stop before the injected instruction does not count as
    a step: with 16 steps per call shared with signals, a 5 kHz flood
    aborted calls ("did not complete") on a loaded CI runner. 80 zombies
    keep the whole reap well inside the parent's 1 s sleep even then.
    """
    with parent("signals", 80) as p:
        sent = threading.Event()

        def pester() -> None:
            while not sent.is_set():
                os.kill(p.pid, signal.SIGUSR1)  # our own child, alive: the PID is safe
                time.sleep(0.0002)

        thread = threading.Thread(target=pester)
        thread.start()
        try:
            result = reap_via_ptrace(p.pid, p.zombies, max_stop=0.001)
        finally:
            sent.set()
            thread.join()
        assert result.reaped == p.zombies
        assert result.held_signals >= 1  # the path under test was taken
        report = p.result()
    assert report["result"] >= 1
    assert 0.99 <= report["duration"] < 2.0
    _unharmed(report, p.zombies)


def test_many_zombies_over_several_short_stops() -> None:
    """200 zombies, stops capped at 0.5 ms: several attaches, every zombie reaped."""
    with parent("sleep", 200) as p:
        result = reap_via_ptrace(p.pid, p.zombies, max_stop=0.0005)
        assert result.reaped == p.zombies
        assert len(result.stops) > 1
        report = p.result()
    assert 0.99 <= report["duration"] < 2.0
    _unharmed(report, p.zombies)


def test_a_live_process_is_not_a_zombie() -> None:
    """A running child is refused as not a zombie, and left alone."""
    with ZombieParent([ZombieSpec(code=1)], sleepers_count=1) as zp:
        with pytest.raises(NotAZombie, match="not a zombie"):
            reap_via_ptrace(zp.pid, zp.sleepers)
        assert proc_state(zp.sleepers[0]) == "S"


def test_a_zombie_of_another_parent_is_refused() -> None:
    """Naming the wrong parent is refused before anything is attached."""
    with ZombieParent([ZombieSpec(code=1)]) as zp:
        with pytest.raises(NotAZombie, match="its parent is"):
            reap_via_ptrace(os.getpid(), zp.zombies)
        assert proc_state(zp.zombies[0]) == "Z"


def test_a_zombie_leader_is_refused() -> None:
    """A process whose main thread exited (threads alive) is not reapable."""
    with ZombieLeader() as leader, pytest.raises(LiveZombieLeader):
        reap_via_ptrace(os.getpid(), [leader.pid])


def test_a_traced_parent_is_refused() -> None:
    """A parent someone already traces (a tracer we start) is refused, even after the check."""
    tracer_code = (
        "import sys; from undertaker.remedy._ptrace import ptrace, PTRACE_SEIZE;"
        "ptrace(PTRACE_SEIZE, int(sys.argv[1])); print('ok', flush=True); sys.stdin.read()"
    )
    with ZombieParent([ZombieSpec(code=2)]) as zp:
        plan = plan_ptrace_reap(zp.pid, zp.zombies)  # checked before the debugger came
        tracer = start([sys.executable, "-c", tracer_code, str(zp.pid)])
        try:
            assert tracer.stdout is not None
            assert tracer.stdout.readline() == "ok\n"
            with pytest.raises(ParentRefused, match="already traced"):
                reap_via_ptrace(zp.pid, zp.zombies)
            with pytest.raises(ParentRefused, match="already traced"):
                plan.execute()  # the kernel's EPERM, explained by TracerPid
            assert proc_state(zp.zombies[0]) == "Z"
        finally:
            plan.close()
            assert tracer.stdin is not None
            tracer.stdin.close()
            tracer.wait(10)
            assert tracer.stdout is not None
            tracer.stdout.close()


# Runs as PID 1 of a private PID namespace. P has zombie child Z. After the
# plan, P reaps Z and, through ns_last_pid, forks a new child that gets Z's
# PID and dies: a zombie of the same parent under the same PID. Executing the
# old plan must leave that newcomer alone.
_REUSE = r"""
import json, os, time
from undertaker.remedy import plan_ptrace_reap
from undertaker.testing import proc_state, sleep_until
cmd_r, cmd_w = os.pipe()
done_r, done_w = os.pipe()
p = os.fork()
if p == 0:
    z = os.fork()
    if z == 0:
        os._exit(7)
    os.write(done_w, b"%d\n" % z)
    os.read(cmd_r, 1)                      # "replace"
    os.waitpid(z, 0)
    with open("/proc/sys/kernel/ns_last_pid", "w") as last:
        last.write(str(z - 1))
    if os.fork() == 0:
        os._exit(9)
    os.write(done_w, b"x")
    os.read(cmd_r, 1)                      # "finish"
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
z = int(os.read(done_r, 64))
sleep_until(lambda: proc_state(z) == "Z")
plan = plan_ptrace_reap(p, [z])
status = str(plan.zombies[0].status)
os.write(cmd_w, b"r")
os.read(done_r, 1)
sleep_until(lambda: proc_state(z) == "Z")
with open("/proc/%d/stat" % z, "rb") as f:
    newcomer = f.read()
result = plan.execute()
plan.close()
still = proc_state(z)
os.write(cmd_w, b"f")
os.waitpid(p, 0)
print(json.dumps({"status": status, "newcomer_code": int(newcomer.split()[-1]),
                  "outcome": [result.outcomes[0].reaped, result.outcomes[0].detail],
                  "after": still}))
"""


@needs_namespace
def test_zombie_replaced_under_the_same_pid_is_not_reaped() -> None:
    """PID reuse (forced with ns_last_pid): the newcomer zombie is not reaped by the old plan."""
    done = run_in_namespace(_REUSE)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "exited 7"
    assert report["newcomer_code"] == 9 << 8  # really another zombie under that PID
    assert report["outcome"] == [False, "gone or replaced before"]
    assert report["after"] == "Z"


FREEZER = "/sys/fs/cgroup/freezer"


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.isdir(FREEZER), reason="needs root and the v1 freezer"
)
def test_a_parent_that_cannot_stop_is_refused_and_left_running() -> None:
    """A frozen parent (D) is refused; forced past the check, the tracer gives up and lets go.

    The hazard: a tracer that gave up but stayed attached would freeze the
    parent in 't' as soon as it thawed. Killing the helper detaches it.
    """
    group = f"{FREEZER}/undertaker-test-{os.getpid()}"
    os.mkdir(group)
    try:
        with ZombieParent([ZombieSpec(code=3)]) as zp:
            Path(group, "cgroup.procs").write_text(str(zp.pid))
            plan = plan_ptrace_reap(zp.pid, zp.zombies)  # checked while it could stop
            try:
                Path(group, "freezer.state").write_text("FROZEN")
                assert sleep_until(lambda: proc_state(zp.pid) == "D")
                with pytest.raises(ParentRefused, match="uninterruptible sleep"):
                    reap_via_ptrace(zp.pid, zp.zombies)
                with pytest.raises(ParentRefused, match=r"did not stop within 1\.0 s"):
                    plan.execute(timeout=1.0)
            finally:
                plan.close()
                Path(group, "freezer.state").write_text("THAWED")
                Path(FREEZER, "cgroup.procs").write_text(str(zp.pid))
            assert sleep_until(lambda: proc_state(zp.pid) == "S")
            assert _tracer_of(zp.pid) == 0
            assert proc_state(zp.zombies[0]) == "Z"
    finally:
        os.rmdir(group)


def _tracer_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(x for x in status if x.startswith("TracerPid:")).split()[1])


# PID 1 of a private namespace. After the checks, parent P exits and a
# newcomer takes its PID (ns_last_pid); neither remedy may touch the newcomer.
_PARENT_REUSE = r"""
import json, os, signal
from undertaker.remedy import ParentGone, plan_ptrace_reap
from undertaker.remedy._target import Target
from undertaker.remedy.signals import kill_parent
from undertaker.testing import proc_state, sleep_until
r, w = os.pipe()
p = os.fork()
if p == 0:
    os.close(w)
    if os.fork() == 0:
        os._exit(7)
    os.read(r, 1)
    os._exit(0)
kids = lambda: open(f"/proc/{p}/task/{p}/children").read().split()
sleep_until(lambda: bool(kids()))
z = int(kids()[0])
sleep_until(lambda: proc_state(z) == "Z")
plan = plan_ptrace_reap(p, [z])
old = Target.open(p)
os.close(w)                                   # P exits; Z comes to us
os.waitpid(p, 0)
sleep_until(lambda: proc_state(z) == "Z")
os.waitpid(z, 0)
with open("/proc/sys/kernel/ns_last_pid", "w") as last:
    last.write(str(p - 1))
r2, w2 = os.pipe()
newcomer = os.fork()
if newcomer == 0:
    os.close(w2)
    os.read(r2, 1)
    os._exit(0)
out = {"same_pid": newcomer == p}
for name, act in (("ptrace", plan.execute), ("kill", lambda: kill_parent(old, [], 0.1))):
    try:
        act()
        out[name] = "acted"
    except ParentGone as err:
        out[name] = err.reason
status = open(f"/proc/{p}/status").read()
out["tracer"] = [l for l in status.splitlines() if l.startswith("TracerPid")][0].split()[1]
out["state"] = proc_state(p)
os.close(w2)
out["newcomer_exit"] = os.waitpid(newcomer, 0)[1]
print(json.dumps(out))
"""


@needs_namespace
def test_parent_replaced_under_the_same_pid_is_not_touched() -> None:
    """Parent PID reused (ns_last_pid): neither ptrace nor kill-parent acts on the newcomer."""
    done = run_in_namespace(_PARENT_REUSE)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["same_pid"] is True  # the newcomer really has the old parent's PID
    assert "replaced" in out["ptrace"]
    assert "replaced" in out["kill"]
    assert out["tracer"] == "0"
    assert out["state"] in {"S", "R"}  # running or waiting on its pipe, never stopped
    assert out["newcomer_exit"] == 0  # it ended by itself: no SIGTERM reached it
