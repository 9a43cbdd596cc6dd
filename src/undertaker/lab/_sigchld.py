"""SIGCHLD handlers and SIG_IGN (articles 002, 003, 004)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from undertaker.lab._core import (
    CONFIRMED,
    DEPENDS,
    REFUTED,
    Gate,
    Lab,
    Pipe,
    Verdict,
    children,
    decide,
    experiment,
    sleeps_in_wait,
    zombie_children,
)
from undertaker.wait import WaitStatus

BURST = 8  # children that exit together


def _burst_parent(report: Pipe, gate: Gate, loop: bool, block: bool) -> int:
    """Fork BURST children that exit together, with a handler reaping per signal or in a loop."""
    calls: list[int] = []

    def once(_signum: int, _frame: object) -> None:
        calls.append(1)
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return

    def drain(_signum: int, _frame: object) -> None:
        calls.append(1)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    signal.signal(signal.SIGCHLD, drain if loop else once)
    start = Gate()
    if block:  # a critical section, or a parent busy elsewhere: the exits pile up
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    for _ in range(BURST):
        if os.fork() == 0:
            start.wait()
            os._exit(0)
    start.release(BURST)
    deadline = time.monotonic() + 2.0
    while _exited() < BURST and time.monotonic() < deadline:
        time.sleep(0.002)
    pending = _sigchld_pending()
    if block:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    time.sleep(0.05)  # the handler runs here, as often as the kernel delivered the signal
    report.send({"calls": len(calls), "zombies": len(zombie_children()), "pending": pending})
    gate.wait()  # the lab takes its ps lines
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return 0


def _exited() -> int:
    """How many of the burst have exited: zombies, plus those a handler already reaped."""
    return len(zombie_children()) + BURST - len(children())


def _sigchld_pending() -> bool:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & (
                1 << (signal.SIGCHLD - 1)
            ):
                return True
    return False


def _burst(lab: Lab, loop: bool, block: bool, label: str) -> dict[str, Any]:
    report, gate = Pipe(), Gate()
    parent = lab.fork(_burst_parent, report, gate, loop, block, name="handler")
    seen = report.recv()
    left = [row["pid"] for row in lab.children_rows(parent)]
    lab.ps(f"{label}, after the handler ran", [parent, *left])
    gate.release()
    lab.collect([parent])
    lab.say(
        f"{label}: {BURST} children exited, the handler ran {seen['calls']} "
        f"time{'s' * (seen['calls'] != 1)}, {seen['zombies']} zombies were left"
    )
    return dict(seen)


@experiment(
    "handler-once",
    "002",
    "a SIGCHLD handler that calls waitpid() once per signal collects every child",
)
def handler_once(lab: Lab) -> Verdict:
    """A burst of exits against a handler that reaps one child per call."""
    free = _burst(lab, loop=False, block=False, label="parent sleeping")
    held = _burst(lab, loop=False, block=True, label="SIGCHLD blocked during the burst")
    lab.say(
        "standard signals do not queue: while one SIGCHLD is pending, more exits add nothing"
        + (" (it was pending once while blocked)" if held["pending"] else "")
    )
    lab.record(sleeping=free, blocked=held, burst=BURST)
    left = free["zombies"] + held["zombies"]
    return decide(
        left > 0,
        Verdict(
            REFUTED,
            f"signals that arrive together merge into one, so {left} of {2 * BURST} children "
            "were left zombies: the handler must loop until waitpid() returns 0",
        ),
        Verdict(CONFIRMED, "every child was collected, one waitpid() per signal"),
    )


@experiment(
    "handler-loop",
    "003",
    "a SIGCHLD handler looping waitpid(-1, WNOHANG) collects every child, however many exit",
)
def handler_loop(lab: Lab) -> Verdict:
    """The same bursts against the article's looping handler."""
    free = _burst(lab, loop=True, block=False, label="parent sleeping")
    held = _burst(lab, loop=True, block=True, label="SIGCHLD blocked during the burst")
    lab.record(sleeping=free, blocked=held, burst=BURST)
    left = free["zombies"] + held["zombies"]
    return decide(
        left == 0,
        Verdict(
            CONFIRMED,
            "one call of the looping handler collects every child that has exited, "
            "so merged signals lose nothing",
        ),
        Verdict(REFUTED, f"{left} children were left zombies despite the loop"),
    )


def _article_handler_parent(report: Pipe, gate: Gate) -> int:
    """The article's first program: its handler loops until waitpid() raises."""
    spins = {"zero": 0, "reaped": 0}
    deadline = [0.0]

    def chldhandler(_signum: int, _frame: object) -> None:
        deadline[0] = time.monotonic() + 0.2  # our bound; the article's loop has none
        while time.monotonic() < deadline[0]:
            try:
                result = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            # the article prints "Reaped child process %d" % result[0] here
            spins["reaped" if result[0] else "zero"] += 1

    signal.signal(signal.SIGCHLD, chldhandler)
    sibling = os.fork()
    if sibling == 0:
        gate.wait()  # a second child that is still running
        os._exit(0)
    if os.fork() == 0:
        os._exit(0)
    time.sleep(0.3)  # the article's time.sleep(10)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    report.send(spins)
    gate.wait()
    os.waitpid(sibling, 0)
    return 0


@experiment(
    "handler-article",
    "003",
    "the article's handler (loop on waitpid(-1, WNOHANG) until it raises) reaps and returns",
)
def handler_article(lab: Lab) -> Verdict:
    """The first program of article 003, with a second child still running."""
    report, gate = Pipe(), Gate()
    parent = lab.fork(_article_handler_parent, report, gate, name="chldhandler")
    spins = report.recv()
    gate.release(2)
    lab.collect([parent])
    lab.say(
        f"it reaped {spins['reaped']} child, then waitpid() returned (0, 0) "
        f"{spins['zero']} times in 200 ms: the loop has no exit while another child runs"
    )
    lab.record(**spins)
    return decide(
        spins["zero"] > 0 and spins["reaped"] == 1,
        Verdict(
            DEPENDS,
            "it returns only when no child is left (ECHILD); with another child alive it "
            "spins on waitpid() returning 0, which the article's loop never checks",
        ),
        Verdict(CONFIRMED, "the handler reaped the child and returned")
        if spins["reaped"] == 1
        else Verdict(REFUTED, f"the handler reaped {spins['reaped']} children, not the one"),
    )


def _ignoring_parent(report: Pipe, last: Gate) -> int:
    """The article's signal(SIGCHLD, SIG_IGN), set before any child exists."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    kids = []
    for held in (False, False, True):  # the last ends once we block in wait()
        pid = os.fork()
        if pid == 0:
            if held:
                last.wait()
            os._exit(3)
        kids.append(pid)
    report.send({"children": kids})
    time.sleep(0.03)
    running = len(children())  # with SIG_IGN an ended child is gone at once: these still run
    started = time.monotonic()
    try:
        pid, status = os.waitpid(-1, 0)
        got = f"pid {pid}: {WaitStatus(status)}"
    except ChildProcessError:
        got = "ECHILD"
    report.send(
        {
            "wait": got,
            "waited_ms": round(1000 * (time.monotonic() - started), 1),
            "running_at_wait": running,
        }
    )
    time.sleep(0.05)  # alive while the lab looks for handed-over children
    return 0


def _watch_ignored(lab: Lab) -> dict[str, Any]:
    """Run the SIG_IGN parent; sample its children's states; see whether the adopter got any."""
    report, last = Pipe(), Gate()
    parent = lab.fork(_ignoring_parent, report, last, name="ignorer")
    kids = report.recv()["children"]
    waiting = False
    seen: dict[int, set[str]] = {pid: set() for pid in kids}
    parents: dict[int, set[int]] = {pid: set() for pid in kids}
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and any(lab.state(p) for p in kids):
        if not waiting and sleeps_in_wait(parent):
            waiting = True
            last.release()
        for row in lab.rows(kids):
            if row["state"] is not None:
                seen[row["pid"]].add(row["state"])
                parents[row["pid"]].add(row["ppid"])
    if not waiting:
        last.release()  # the parent never blocked in wait(): let the last child go anyway
    lab.ps("children of the SIG_IGN parent, after they exited", [parent, *kids])
    waited = report.recv()
    handed = [pid for pid, _ in lab.reap_any() if pid != parent]
    lab.collect([parent])
    states = sorted(set().union(*seen.values()))
    ppids = sorted(set().union(*parents.values()))
    lab.say(
        f"the children showed states {', '.join(states) or 'none'}"
        f"{'' if 'Z' in states else ', never Z,'} with PPID "
        f"{', '.join(map(str, ppids))} until they vanished"
    )
    blocked = (
        f"it blocked, {waited['running_at_wait']} child still running, until the last ended"
        if waited["running_at_wait"]
        else "every child had already ended when it was called"
    )
    lab.say(
        f"the parent's wait() returned {waited['wait']} after {waited['waited_ms']} ms: {blocked}"
    )
    lab.say(f"the adopter was handed {len(handed)} of them")
    return {
        "states": states,
        "ppids": ppids,
        "parent": parent,
        "handed_to_adopter": handed,
        "wait": waited["wait"],
        "waited_ms": waited["waited_ms"],
        "running_at_wait": waited["running_at_wait"],
    }


@experiment(
    "sigign-no-zombies",
    "004",
    "with signal(SIGCHLD, SIG_IGN) a parent that never waits leaves no zombies",
)
def sigign_no_zombies(lab: Lab) -> Verdict:
    """SIG_IGN set before the children exit."""
    seen = _watch_ignored(lab)
    lab.record(**seen)
    blocked = "it blocked until all had ended, then" if seen["running_at_wait"] else "it"
    return decide(
        "Z" not in seen["states"] and seen["wait"] == "ECHILD",
        Verdict(
            CONFIRMED,
            f"no child was ever a zombie, and wait() found none: {blocked} failed with ECHILD",
        ),
        Verdict(REFUTED, "a child of the SIG_IGN parent became a zombie or was waited for"),
    )


@experiment(
    "sigign-handover",
    "004",
    "with SIG_IGN the kernel hands the dead children to init, which reaps them",
)
def sigign_handover(lab: Lab) -> Verdict:
    """Who releases the children of a SIG_IGN parent."""
    seen = _watch_ignored(lab)
    lab.record(**seen)
    return decide(
        not seen["handed_to_adopter"] and seen["ppids"] == [seen["parent"]],
        Verdict(
            REFUTED,
            "the kernel released each child at its exit while it was still "
            "the parent's; init (here the adopter) never received one",
        ),
        Verdict(CONFIRMED, "the dead children were re-parented to the adopter"),
    )


def _late_ignorer(report: Pipe, gate: Gate) -> int:
    child = os.fork()
    if child == 0:
        os._exit(4)
    deadline = time.monotonic() + 2.0
    while not zombie_children() and time.monotonic() < deadline:
        time.sleep(0.001)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # only now
    report.send({"child": child})
    gate.wait()
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
        got = f"pid {pid}: {WaitStatus(status)}" if pid else "0 (none ready)"
    except ChildProcessError:
        got = "ECHILD"
    report.send({"wait": got})
    return 0


@experiment(
    "sigign-late",
    "004",
    "signal(SIGCHLD, SIG_IGN) in the parent means it has no zombies",
)
def sigign_late(lab: Lab) -> Verdict:
    """SIG_IGN set after a child has already become a zombie."""
    report, gate = Pipe(), Gate()
    parent = lab.fork(_late_ignorer, report, gate, name="late-ignorer")
    child = report.recv()["child"]
    lab.until(lambda: False, 0.1)
    row = lab.ps("100 ms after the parent set SIG_IGN", [parent, child])[1]
    gate.release()
    waited = report.recv()["wait"]
    lab.collect([parent])
    lab.say(
        f"the zombie made before SIG_IGN still shows {row['state']}; the parent's "
        f"waitpid() then returned {waited}"
    )
    lab.record(state_after_ign=row["state"], wait=waited)
    return decide(
        row["state"] == "Z",
        Verdict(
            DEPENDS,
            "SIG_IGN only stops new zombies: one that exists when it is set "
            "stays until the parent waits for it (or exits)",
        ),
        Verdict(CONFIRMED, "setting SIG_IGN also removed the zombie that already existed"),
    )


EXPERIMENTS = (
    handler_once,
    handler_loop,
    handler_article,
    sigign_no_zombies,
    sigign_handover,
    sigign_late,
)
