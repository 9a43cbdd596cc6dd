"""``PR_SET_PDEATHSIG``: a signal when the parent dies (article 004)."""

from __future__ import annotations

import os
import signal
import threading
import time

from undertaker.lab._core import (
    CONFIRMED,
    DEPENDS,
    REFUTED,
    Gate,
    Lab,
    Pipe,
    Verdict,
    decide,
    experiment,
    set_comm,
)
from undertaker.prctl import set_parent_death_signal


def _orphan_to_be(report: Pipe, ready: Pipe, parent: int) -> None:
    """The article's child: ask for SIGHUP when the parent dies, then wait for it."""
    set_comm("pdeath-child")
    set_parent_death_signal(signal.SIGHUP)
    if os.getppid() != parent:  # the parent died before the request: nobody will tell us
        os._exit(3)
    report.send({"child": os.getpid()})
    ready.send({"set": True})  # last: the forking thread may end, and signal us, right after
    signal.pause()  # SIGHUP's default action ends us
    os._exit(0)


def _wait_briefly(pid: int, timeout: float) -> int:
    """Our child's raw status, or -1 if it still runs after *timeout* (then it is killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return status
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)  # our own child, not yet reaped
    os.waitpid(pid, 0)
    return -1


def _parent(report: Pipe, gate: Gate, forker: str) -> int:
    me = os.getpid()
    forked: list[int] = []
    ready = Pipe()

    def fork_child() -> None:
        pid = os.fork()
        if pid == 0:
            _orphan_to_be(report, ready, me)
        ready.recv(2.0)  # the child has asked for the signal while we, its parent, live
        forked.append(pid)

    if forker == "thread":  # the forking thread ends now; the process lives on
        worker = threading.Thread(target=fork_child)
        worker.start()
        worker.join()
    else:
        fork_child()
    gate.wait()
    report.send({"status": _wait_briefly(forked[0], 0.5)})
    gate.wait()
    return 0


@experiment(
    "pdeathsig",
    "004",
    "a child that sets prctl(PR_SET_PDEATHSIG, SIGHUP) receives SIGHUP when its "
    "parent dies, and ends",
)
def pdeathsig(lab: Lab) -> Verdict:
    """Kill the parent; see how the child ended (its adopter reaps it)."""
    report, gate = Pipe(), Gate()
    parent = lab.fork(_parent, report, gate, "main", name="pdeath-parent")
    child = report.recv()["child"]
    lab.ps("before", [parent, child])
    os.kill(parent, signal.SIGKILL)  # our child, not yet reaped
    statuses = lab.collect([parent, child], timeout=2.0)
    ended = statuses.get(child)
    lab.say(f"the parent was killed; the child, adopted by {lab.adopter_name}, ended: {ended}")
    lab.record(child_status=str(ended))
    return decide(
        ended is not None and ended.term_signal == signal.SIGHUP,
        Verdict(
            CONFIRMED,
            "the kernel sent SIGHUP to the child when its parent died, and "
            "SIGHUP's default action ended it",
        ),
        Verdict(REFUTED, f"the child ended otherwise: {ended}"),
    )


@experiment("pdeathsig-thread", "004", "PR_SET_PDEATHSIG fires when the parent process exits")
def pdeathsig_thread(lab: Lab) -> Verdict:
    """Fork from a short-lived thread of a parent that stays alive."""
    report, gate = Pipe(), Gate()
    parent = lab.fork(_parent, report, gate, "thread", name="pdeath-parent")
    child = report.recv()["child"]
    gate.release()
    got = report.recv()["status"]
    rows = lab.ps("after the forking thread ended", [parent, child])
    gate.release()
    lab.collect([parent])
    from undertaker.wait import WaitStatus  # noqa: PLC0415

    ended = WaitStatus(got) if got >= 0 else None
    alive = rows[0]["state"] not in (None, "Z")
    lab.say(
        f"the thread that forked the child ended while the parent process lived on "
        f"(state {rows[0]['state']}); the child ended: {ended}"
    )
    lab.record(child_status=str(ended), parent_alive=alive)
    return decide(
        ended is not None and ended.term_signal == signal.SIGHUP and alive,
        Verdict(
            DEPENDS,
            "the signal fires when the thread that forked the child exits, even "
            "with the parent process alive: fork from a thread that lives as long as "
            "the process",
        ),
        Verdict(CONFIRMED, "the child was not signalled while the parent process lived"),
    )


EXPERIMENTS = (pdeathsig, pdeathsig_thread)
