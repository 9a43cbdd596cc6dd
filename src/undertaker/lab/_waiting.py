"""``waitpid``: its pid argument, its options and its errors (article 004)."""

from __future__ import annotations

import ctypes
import errno
import os
import select
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
    sleeps_in_wait,
    zombie_children,
)
from undertaker.testing import sleep_until
from undertaker.wait import WaitStatus


def _try_wait(pid: int, options: int) -> str:
    """``waitpid(pid, options)`` as text: ``pid 4: exited 2``, ``0 (none ready)``, ``ECHILD``."""
    try:
        got, status = os.waitpid(pid, options)
    except ChildProcessError:
        return "ECHILD"
    return f"pid {got}: {WaitStatus(status)}" if got else "0 (none ready)"


def _child_in_group(gate: Gate, code: int, group: int | None) -> int:
    """Join *group* (0: a new one of our own; None: stay), wait for the gate, exit *code*."""
    if group is not None:
        os.setpgid(0, group)
    gate.wait()
    return code


def _pid_forms_parent(report: Pipe, ready: Gate) -> int:
    """Children in our group and in two others; then each form of the pid argument."""
    os.setpgid(0, 0)
    gate, later = Gate(), Gate()
    kids: dict[str, int] = {}
    # name, exit code, group: None ours, 0 a new group of its own, "leader" the leader's
    plan: list[tuple[str, int, Any]] = [
        ("same_group", 1, None),
        ("leader", 2, 0),
        ("member", 3, "leader"),
        ("alone", 4, 0),
    ]
    for name, code, group in plan:
        target = kids["leader"] if group == "leader" else group
        pid = os.fork()
        if pid == 0:
            os._exit(_child_in_group(gate, code, target))
        if target is not None:
            os.setpgid(pid, target or pid)  # in both processes: no race on who runs first
        kids[name] = pid
    late = os.fork()
    if late == 0:
        later.wait()
        os._exit(5)
    kids["late"] = late  # in our group, still running
    gate.release(len(plan))
    if not sleep_until(lambda: len(zombie_children()) == len(plan), 10.0):
        raise TimeoutError("the four children did not all exit")  # an error, not a verdict
    report.send({"kids": kids})
    ready.wait()  # the lab takes its ps lines
    group = kids["leader"]
    calls = [
        ("waitpid(0, WNOHANG): any child in our group", _try_wait(0, os.WNOHANG)),
        ("waitpid(0, WNOHANG) again", _try_wait(0, os.WNOHANG)),
        (f"waitpid(-{group}, WNOHANG): any child in group {group}", _try_wait(-group, os.WNOHANG)),
        (f"waitpid(-{group}, WNOHANG) again", _try_wait(-group, os.WNOHANG)),
        (f"waitpid(-{group}, WNOHANG) a third time", _try_wait(-group, os.WNOHANG)),
    ]
    later.release()
    calls += [
        (f"waitpid({late}, 0): that child, while {kids['alone']} is a zombie", _try_wait(late, 0)),
        ("waitpid(-1, WNOHANG): any child", _try_wait(-1, os.WNOHANG)),
        ("waitpid(-1, WNOHANG) again", _try_wait(-1, os.WNOHANG)),
    ]
    report.send({"calls": calls})
    return 0


@experiment(
    "waitpid-pid",
    "004",
    "waitpid's pid: >0 that child only, -1 any child, 0 any in our group, <-1 any in group -pid",
)
def waitpid_pid(lab: Lab) -> Verdict:
    """Each form of the pid argument against children in two process groups."""
    report, ready = Pipe(), Gate()
    parent = lab.fork(_pid_forms_parent, report, ready, name="waiter")
    kids = report.recv()["kids"]
    lab.ps(
        "before the waits: four zombies in three groups, one child running",
        [parent, *kids.values()],
    )
    ready.release()
    seen = report.recv()
    lab.collect([parent])
    calls = dict(seen["calls"])
    for call, result in seen["calls"]:
        lab.say(f"{call} -> {result}")
    results = list(calls.values())
    group_got = sorted(results[2:4])
    expected = [
        results[0] == f"pid {kids['same_group']}: exited 1",
        results[1] == "0 (none ready)",  # the late child is in our group and still running
        group_got == sorted([f"pid {kids['leader']}: exited 2", f"pid {kids['member']}: exited 3"]),
        results[4] == "ECHILD",  # nobody is left in that group
        results[5] == f"pid {kids['late']}: exited 5",
        results[6] == f"pid {kids['alone']}: exited 4",
        results[7] == "ECHILD",
    ]
    lab.record(children=kids, calls=calls, matches=expected)
    return decide(
        all(expected),
        Verdict(
            CONFIRMED,
            "each form collected exactly the children the article says, and a group "
            "with no child left gives ECHILD",
        ),
        Verdict(REFUTED, "some form of the pid argument collected other children"),
    )


def _idle(gate: Gate) -> int:
    gate.wait()
    return 0


def _echild_parent(report: Pipe) -> int:
    gate, private = Gate(), Pipe()  # the lab reads *report*: the family talks privately
    child = os.fork()
    if child == 0:
        grandchild = os.fork()
        if grandchild == 0:
            os._exit(_idle(gate))
        private.send({"grandchild": grandchild})
        gate.wait()
        os.waitpid(grandchild, 0)
        os._exit(0)
    grandchild = private.recv()["grandchild"]
    unused = 4194304  # above every PID this namespace hands out first
    calls = [
        (f"waitpid({grandchild}, WNOHANG): a grandchild", _try_wait(grandchild, os.WNOHANG)),
        (f"waitpid({os.getppid()}, WNOHANG): our parent", _try_wait(os.getppid(), os.WNOHANG)),
        (f"waitpid({unused}, WNOHANG): no such process", _try_wait(unused, os.WNOHANG)),
        (f"waitpid({child}, WNOHANG): our running child", _try_wait(child, os.WNOHANG)),
    ]
    gate.release(2)
    os.waitpid(child, 0)
    calls.append(("waitpid(-1, 0) with no child left", _try_wait(-1, 0)))
    report.send({"calls": calls})
    return 0


@experiment(
    "waitpid-echild",
    "004",
    "wait fails with ECHILD when the caller has no child, or pid is not its child",
)
def waitpid_echild(lab: Lab) -> Verdict:
    """Waitpid on a grandchild, the parent, a free PID, and with no children."""
    report = Pipe()
    parent = lab.fork(_echild_parent, report, name="waiter")
    seen = report.recv()
    lab.collect([parent])
    results = [result for _, result in seen["calls"]]
    for call, result in seen["calls"]:
        lab.say(f"{call} -> {result}")
    lab.record(calls=dict(seen["calls"]))
    wanted = ["ECHILD", "ECHILD", "ECHILD", "0 (none ready)", "ECHILD"]
    return decide(
        results == wanted,
        Verdict(
            CONFIRMED,
            "every PID that is not our child (even a grandchild, or no process at all) "
            "and an empty family gave ECHILD; a running child gave 0",
        ),
        Verdict(REFUTED, f"the results were {results}, not {wanted}"),
    )


def _eintr_trial(libc: Any, sig: int, *, restart: bool | None) -> dict[str, Any]:
    """Block in libc's waitpid while another child sends us *sig*.

    No timing decides the outcome: the sender signals once we sleep in
    wait4, and the child waited for exits only after that, once our handler
    (if any) has run: a wait that returned EINTR has returned by then.
    """
    caught = restart is not None
    woke_read, woke_write = os.pipe()  # Python's C handler writes here when the signal lands
    os.set_blocking(woke_write, False)
    if caught:
        signal.signal(sig, lambda _s, _f: None)
        signal.siginterrupt(sig, not restart)  # False sets SA_RESTART
        signal.set_wakeup_fd(woke_write, warn_on_full_buffer=False)
    hold = Gate()
    target = os.fork()
    if target == 0:
        hold.wait()
        os._exit(0)
    me = os.getpid()
    sender = os.fork()
    if sender == 0:
        sleep_until(lambda: sleeps_in_wait(me), 2.0)
        os.kill(me, sig)
        if caught:
            select.select([woke_read], [], [], 2.0)
        hold.release()
        os._exit(0)
    status = ctypes.c_int(0)
    started = time.monotonic()
    ctypes.set_errno(0)
    got = libc.waitpid(target, ctypes.byref(status), 0)
    err = ctypes.get_errno()
    elapsed = time.monotonic() - started
    if got == -1:
        os.waitpid(target, 0)
    os.waitpid(sender, 0)
    signal.set_wakeup_fd(-1)
    signal.signal(sig, signal.SIG_DFL)
    for fd in (woke_read, woke_write, hold.read_fd, hold.write_fd):
        os.close(fd)
    return {
        "returned": got,
        "errno": errno.errorcode.get(err, str(err)) if got == -1 else None,
        "ms": round(1000 * elapsed),
    }


def _eintr_parent(report: Pipe) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    report.send(
        {
            "ignored": _eintr_trial(libc, signal.SIGWINCH, restart=None),
            "caught": _eintr_trial(libc, signal.SIGUSR1, restart=False),
            "caught_restart": _eintr_trial(libc, signal.SIGUSR1, restart=True),
        }
    )
    return 0


@experiment(
    "waitpid-eintr",
    "004",
    "wait fails with EINTR when the signal was not caught or not set",
)
def waitpid_eintr(lab: Lab) -> Verdict:
    """A signal arrives while waitpid() blocks for a child that ends only after it."""
    report = Pipe()
    parent = lab.fork(_eintr_parent, report, name="waiter")
    trials = report.recv()
    lab.collect([parent])
    labels = {
        "ignored": "SIGWINCH, not caught (default: ignore)",
        "caught": "SIGUSR1 caught by a handler, no SA_RESTART",
        "caught_restart": "SIGUSR1 caught by a handler with SA_RESTART",
    }
    for key, label in labels.items():
        t = trials[key]
        outcome = f"-1 {t['errno']}" if t["returned"] == -1 else "the child's PID"
        lab.say(f"{label}: waitpid returned {outcome} ({t['ms']} ms)")
    lab.say("(Python's os.waitpid retries after EINTR itself, PEP 475; this calls libc's)")
    lab.record(**trials)
    only_caught = (
        trials["caught"]["errno"] == "EINTR"
        and trials["ignored"]["errno"] is None
        and trials["caught_restart"]["errno"] is None
    )
    if trials["ignored"]["errno"] == "EINTR":
        return Verdict(CONFIRMED, "a signal that was not caught interrupted wait with EINTR")
    interrupted = [labels[k] for k, t in trials.items() if t["errno"] == "EINTR"]
    return decide(
        only_caught,
        Verdict(
            REFUTED,
            "EINTR came only from a signal that was caught, by a handler installed without "
            "SA_RESTART; an uncaught ignored signal did not interrupt, and SA_RESTART resumed",
        ),
        Verdict(
            REFUTED,
            "an uncaught signal did not interrupt wait; EINTR came from: "
            + ("; ".join(interrupted) or "no signal at all"),
        ),
    )


@experiment(
    "wnohang-poll",
    "004",
    "with WNOHANG, waitpid returns 0 at once when no child has exited, instead of blocking",
)
def wnohang_poll(lab: Lab) -> Verdict:
    """Poll a child that ends after 100 ms."""
    gate = Gate()
    child = lab.fork(_idle, gate, name="worker")
    started = time.monotonic()
    first = os.waitpid(child, os.WNOHANG)
    first_ms = 1000 * (time.monotonic() - started)
    lab.ps("while it runs", [child])
    gate.release()
    polls, got = 1, first
    while got[0] == 0 and time.monotonic() - started < 2.0:
        time.sleep(0.01)
        got = os.waitpid(child, os.WNOHANG)
        polls += 1
    lab.say(f"the first waitpid(WNOHANG) returned {tuple(first)} in {first_ms:.2f} ms")
    lab.say(f"after the child exited, poll {polls} returned pid {got[0]}: {WaitStatus(got[1])}")
    lab.record(first=list(first), first_ms=round(first_ms, 3), polls=polls, reaped=got[0] == child)
    return decide(
        first == (0, 0) and first_ms < 50 and got[0] == child,
        Verdict(
            CONFIRMED,
            "it returned (0, 0) at once while the child ran, and the child once it had exited",
        ),
        Verdict(REFUTED, "waitpid(WNOHANG) blocked, or did not return the child"),
    )


EXPERIMENTS = (waitpid_pid, waitpid_echild, waitpid_eintr, wnohang_poll)
