"""The process states as ``ps`` shows them: R, S, D, T, t, Z (article 002)."""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import tempfile

from undertaker.lab._core import (
    CONFIRMED,
    DEPENDS,
    REFUTED,
    Gate,
    Lab,
    Pipe,
    Verdict,
    experiment,
)
from undertaker.lab._programs import SLEEP

PTRACE_TRACEME = 0


def _spin(gate: Gate) -> int:
    while not select.select([gate.read_fd], [], [], 0)[0]:  # busy: running or runnable, R
        pass
    gate.wait()
    return 0


def _block(gate: Gate) -> int:
    gate.wait()  # asleep in read(): S
    return 0


def _spawn_through(fifo: str, report: Pipe) -> int:
    """posix_spawn a child whose open() of a FIFO blocks before its exec.

    glibc's posix_spawn uses clone(CLONE_VFORK): the parent sleeps,
    uninterruptibly, until the child execs, so it shows D meanwhile.
    """
    child = os.posix_spawn(
        SLEEP,
        [SLEEP, "5"],
        os.environ,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, fifo, os.O_RDONLY, 0)],
    )
    report.send({"spawned": child})
    os.kill(child, signal.SIGKILL)  # our own child, not yet reaped
    os.waitpid(child, 0)
    return 0


def _traced() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace(PTRACE_TRACEME, 0, None, None)
    os.kill(os.getpid(), signal.SIGSTOP)  # traced: a signal-delivery stop, t
    return 0


@experiment(
    "ps-states",
    "002",
    "ps shows R running, S sleeping, D uninterruptible sleep, T stopped or traced, Z zombie",
)
def ps_states(lab: Lab) -> Verdict:
    """Put one process in each state and read the letter the kernel reports."""
    seen: dict[str, str | None] = {}
    gate, report = Gate(), Pipe()
    busy = lab.fork(_spin, gate, name="busy")
    seen["R"] = "R" if lab.wait_state(busy, "R", 2.0) else lab.state(busy)
    sleeper = lab.fork(_block, gate, name="sleeper")
    lab.wait_state(sleeper, "S", 2.0)
    seen["S"] = lab.state(sleeper)
    stopped = lab.fork(_block, gate, name="stopped")
    os.kill(stopped, signal.SIGSTOP)
    lab.wait_state(stopped, "T", 2.0)
    seen["T"] = lab.state(stopped)
    traced = lab.fork(_traced, name="traced")
    os.waitpid(traced, os.WUNTRACED)  # its stop, reported to us, its tracer
    seen["t"] = lab.state(traced)
    zombie = lab.fork(lambda: 0, name="zombie")
    lab.wait_state(zombie, "Z", 2.0)
    seen["Z"] = lab.state(zombie)
    fifo_dir = tempfile.mkdtemp(prefix="undertaker-lab-")
    fifo = os.path.join(fifo_dir, "fifo")
    os.mkfifo(fifo)
    spawner = lab.fork(_spawn_through, fifo, report, name="spawner")
    lab.wait_state(spawner, "D", 2.0)
    seen["D"] = lab.state(spawner)
    lab.ps("one process in each state", [busy, sleeper, spawner, stopped, traced, zombie])
    writer = os.open(fifo, os.O_WRONLY)  # the spawned child's open() completes; it execs
    report.recv()
    os.close(writer)
    shutil.rmtree(fifo_dir)
    os.kill(traced, signal.SIGKILL)  # our children, unreaped: their PIDs are theirs
    os.kill(stopped, signal.SIGKILL)
    gate.release(2)
    lab.collect([busy, sleeper, spawner, stopped, traced, zombie])
    for letter, got in seen.items():
        lab.say(f"wanted {letter}: the kernel showed {got}")
    lab.record(states=seen)
    if any(seen[k] != k for k in "RSDTZ"):
        return Verdict(REFUTED, f"a state letter differed: {seen}")
    if seen["t"] == "t":
        return Verdict(
            DEPENDS,
            "R, S, D, T and Z are as described, but a process stopped "
            "by its tracer shows t, not T (since Linux 2.6.33): T is a job-control "
            "stop only",
        )
    return Verdict(CONFIRMED, "every letter was as described, a traced stop included")


EXPERIMENTS = (ps_states,)
