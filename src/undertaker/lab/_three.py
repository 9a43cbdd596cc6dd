"""Article 004's experiment: a parent, three children ending at 3, 10 and 17 s, six endings.

The article's program is C; the same system calls are made here with
``os.fork``/``os.wait``, and its times are scaled down a hundredfold
(30, 100 and 170 ms; the parent's ``sleep(20)`` is 250 ms, and lasts until
the lab has seen every child exit, however slow the machine).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from undertaker.lab._core import (
    CONFIRMED,
    REFUTED,
    Gate,
    Lab,
    Pipe,
    Verdict,
    decide,
    experiment,
    set_comm,
)

DELAYS = (0.03, 0.10, 0.17)
PARENT_SLEEP = 0.25


def _wait() -> int:
    """C's ``wait(NULL)``: a PID, or -1 when there is no child."""
    try:
        return os.wait()[0]
    except ChildProcessError:
        return -1


def _child(report: Pipe, index: int, delay: float) -> None:
    set_comm(f"child{index + 1}")
    time.sleep(delay)
    report.send({"child": index, "pid": os.getpid(), "exit_at": time.monotonic()})
    os._exit(0)


def _three_parent(report: Pipe, variant: str, slept: Gate) -> int:
    kids = []
    for index, delay in enumerate(DELAYS):
        pid = os.fork()
        if pid == 0:
            _child(report, index, delay)
        kids.append(pid)
    printed: list[int] = []
    if variant == "loop":  # while(1) { pid = wait(NULL); printf(pid); if (pid == -1) break; }
        while True:
            printed.append(_wait())
            if printed[-1] == -1:
                break
    elif variant == "drain":  # while(wait(NULL) != -1);
        while _wait() != -1:
            pass
    elif variant == "once":  # printf(wait(NULL));
        printed.append(_wait())
    elif variant == "twice":  # while(wait(NULL) != -1) printf(wait(NULL));
        while _wait() != -1:
            printed.append(_wait())
    elif variant == "ignore":  # signal(SIGCHLD, SIG_IGN); sleep(20);
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        _sleep_20(slept)
    else:  # sleep(20): no wait at all
        _sleep_20(slept)
    report.send(
        {"parent": os.getpid(), "kids": kids, "printed": printed, "exit_at": time.monotonic()}
    )
    return 0


def _sleep_20(slept: Gate) -> None:
    """The article's sleep(20), which outlasts every child: here, until the lab has looked.

    A fixed sleep would race a slow machine: the parent could exit before the
    lab saw the children it leaves behind.
    """
    time.sleep(PARENT_SLEEP)
    slept.wait()


def _run(lab: Lab, variant: str, watch: str = "") -> dict[str, Any]:
    """Run one variant; *watch* ``zombies`` or ``orphans`` takes a ps line at the key moment."""
    report, slept = Pipe(), Gate()
    parent = lab.fork(_three_parent, report, variant, slept, name="parent")
    if watch != "zombies":
        slept.release()  # nobody looks while it sleeps: let it go at once
    kids: list[int] = []
    messages: list[dict[str, Any]] = []
    while not kids:  # the children's and the parent's messages, in any order
        msg = report.recv(3.0)
        messages.append(msg)
        if "parent" in msg:
            kids = msg["kids"]
        elif watch == "zombies" and sum("child" in m for m in messages) == len(DELAYS):
            pids = sorted(m["pid"] for m in messages)
            lab.until(lambda p=pids: all(lab.state(k) in ("Z", None) for k in p), 5.0)  # type: ignore[misc]
            lab.ps("all three children have exited; the parent sleeps", [parent, *pids])
            slept.release()
    if watch == "orphans":
        lab.wait_state(parent, "Z", 1.0)
        lab.ps("the parent returned after one wait()", [parent, *kids])
    adopted = lab.collect([parent], timeout=3.0)
    while sum("child" in m for m in messages) < len(DELAYS):
        messages.append(report.recv(3.0))
    adopted.update(lab.collect([k for k in kids if lab.state(k) is not None], timeout=3.0))
    done = next(m for m in messages if "parent" in m)
    exits = sorted((m for m in messages if "child" in m), key=lambda m: m["exit_at"])
    order = [m["pid"] for m in exits]
    lab.say(f"the children exited in the order {order} (each was to sleep 30, 100 or 170 ms)")
    return {
        "exit_order": order,
        "printed": done["printed"],
        "parent_exit_after_last_child": done["exit_at"] >= exits[-1]["exit_at"],
        "parent_exit_after_first_child_only": exits[0]["exit_at"]
        <= done["exit_at"]
        < exits[1]["exit_at"],
        "adopted_by_adopter": sorted(k for k in kids if k in adopted),
    }


@experiment(
    "three-wait-loop",
    "004",
    "a loop of wait() returns each child as it exits, then -1 when none is left",
)
def three_wait_loop(lab: Lab) -> Verdict:
    """``while(1) { pid = wait(NULL); printf; if (pid == -1) break; }``."""
    seen = _run(lab, "loop")
    lab.say(f"the parent printed {seen['printed']}")
    lab.record(**seen)
    return decide(
        seen["printed"] == [*seen["exit_order"], -1],
        Verdict(CONFIRMED, "wait() returned the children in the order they exited, then -1"),
        Verdict(REFUTED, "wait() returned the children in another order"),
    )


@experiment(
    "three-wait-drain", "004", "with while(wait(NULL) != -1); the parent exits after its last child"
)
def three_wait_drain(lab: Lab) -> Verdict:
    """``while(wait(NULL) != -1);``."""
    seen = _run(lab, "drain")
    lab.record(**seen)
    after = seen["parent_exit_after_last_child"]
    lab.say("the parent exited after the last child" if after else "the parent exited first")
    return decide(
        after and not seen["adopted_by_adopter"],
        Verdict(CONFIRMED, "the parent stayed until the last child had exited and reaped all"),
        Verdict(REFUTED, "the parent exited before its last child, or left one to init"),
    )


@experiment(
    "three-wait-once",
    "004",
    "one wait(): the parent returns after the first child; init adopts the other two",
)
def three_wait_once(lab: Lab) -> Verdict:
    """``printf(wait(NULL))`` and return."""
    seen = _run(lab, "once", watch="orphans")
    lab.say(
        f"the parent printed {seen['printed']}; {lab.adopter_name} reaped "
        f"{seen['adopted_by_adopter']}"
    )
    lab.record(**seen)
    return decide(
        seen["printed"] == seen["exit_order"][:1]
        and seen["adopted_by_adopter"] == sorted(seen["exit_order"][1:]),
        Verdict(
            CONFIRMED,
            "wait() returned the first child to exit; the two others, orphaned "
            "alive, were adopted and reaped by the adopter, never left zombies",
        ),
        Verdict(REFUTED, "the single wait() or the adoption did not go as described"),
    )


@experiment(
    "three-wait-twice",
    "004",
    "while(wait(NULL) != -1) printf(wait(NULL)); prints the second child, then -1",
)
def three_wait_twice(lab: Lab) -> Verdict:
    """Two waits per loop turn: the loop's result is thrown away."""
    seen = _run(lab, "twice")
    lab.say(f"the parent printed {seen['printed']}")
    lab.record(**seen)
    return decide(
        seen["printed"] == [seen["exit_order"][1], -1],
        Verdict(
            CONFIRMED,
            "the loop's wait() took the first and third child unprinted; the "
            "printed waits returned the second child and -1",
        ),
        Verdict(REFUTED, f"it printed {seen['printed']}"),
    )


@experiment(
    "three-sig-ign",
    "004",
    "SIG_IGN and no wait(): no child becomes a zombie while the parent sleeps",
)
def three_sig_ign(lab: Lab) -> Verdict:
    """``signal(SIGCHLD, SIG_IGN); sleep(20);``."""
    seen = _run(lab, "ignore", watch="zombies")
    rows = lab.tables[-1]["rows"][1:] if lab.tables else []
    states = [r["state"] for r in rows]
    lab.say(f"while the parent slept its children showed {states} (None: gone)")
    lab.record(**seen, states=states)
    return decide(
        len(states) == len(DELAYS) and "Z" not in states and not seen["adopted_by_adopter"],
        Verdict(
            CONFIRMED, "the children vanished as they exited; none was a zombie or left for init"
        ),
        Verdict(REFUTED, "a child became a zombie despite SIG_IGN"),
    )


@experiment(
    "three-no-wait",
    "004",
    "no wait() and no SIG_IGN: the children stay zombies until the parent exits, "
    "then init takes them",
)
def three_no_wait(lab: Lab) -> Verdict:
    """``sleep(20)`` with no wait at all."""
    seen = _run(lab, "sleep", watch="zombies")
    rows = lab.tables[-1]["rows"][1:] if lab.tables else []
    states = [r["state"] for r in rows]
    lab.say(
        f"while the parent slept its children showed {states}; after it exited "
        f"{lab.adopter_name} reaped {seen['adopted_by_adopter']}"
    )
    lab.record(**seen, states=states)
    return decide(
        states == ["Z"] * len(DELAYS) and seen["adopted_by_adopter"] == sorted(seen["exit_order"]),
        Verdict(
            CONFIRMED,
            "all three were zombies while the parent lived; when it exited "
            "the adopter took and reaped them",
        ),
        Verdict(REFUTED, "the children were not zombies, or were not taken by the adopter"),
    )


EXPERIMENTS = (
    three_wait_loop,
    three_wait_drain,
    three_wait_once,
    three_wait_twice,
    three_sig_ign,
    three_no_wait,
)
