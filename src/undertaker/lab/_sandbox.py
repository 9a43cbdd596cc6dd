"""Run one experiment isolated, in a fresh interpreter, and bring back its result.

As root the experiment runs as PID 1 of a private PID namespace with its own
``/proc`` (``unshare --pid --fork --mount-proc --kill-child``): it sees only
its own processes, orphans come to it, and when it exits the kernel kills
whatever is left. Otherwise it runs as a child subreaper, which adopts the
orphans of its descendants and kills and reaps them all before it exits.
Either way the sandbox lists what an experiment left behind, so a leak is
reported, not hidden.

The result is one JSON line on standard output; the experiment's own
processes write to ``/dev/null``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from typing import Any

import undertaker
from undertaker.lab._core import (
    ERROR,
    SEEDS,
    SKIPPED,
    STOP_SIGNALS,
    Lab,
    Skip,
    children,
    default_signals,
)
from undertaker.lab._registry import find
from undertaker.wait import signal_name

BUDGET = 20.0  # seconds an experiment may take before it is stopped (all take < 1 s)
GRACE = 5.0  # seconds a stopped sandbox has to kill and reap its processes
_SRC = os.path.dirname(os.path.dirname(os.path.abspath(undertaker.__file__)))


@functools.cache
def can_use_namespace() -> bool:
    """Whether a private PID namespace can be made here (root, unshare, no seccomp veto)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "true"],
        capture_output=True,
        check=False,
        timeout=10,
    )
    return done.returncode == 0


def _command(exp_id: str, namespace: bool) -> list[str]:
    code = (
        f"import sys; sys.path.insert(0, {_SRC!r}); "
        "from undertaker.lab._sandbox import main; main()"
    )
    argv = [sys.executable, "-I", "-c", code, "namespace" if namespace else "subreaper", exp_id]
    if namespace:
        return ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
    return argv


def run_isolated(exp_id: str, namespace: bool | None = None) -> dict[str, Any]:
    """Run experiment *exp_id* in a sandbox and return its result document.

    Args:
        exp_id: a registered experiment.
        namespace: force the isolation (default: a PID namespace when possible).
    """
    if namespace is None:
        namespace = can_use_namespace()
    started = time.monotonic()
    proc = subprocess.Popen(
        _command(exp_id, namespace),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=BUDGET + 10)
    except subprocess.TimeoutExpired:
        _stop_sandbox(proc)
        return _failure(exp_id, namespace, "the sandbox did not finish in time", "", started)
    except BaseException:  # Ctrl-C, or the caller's own stop signal: clean up first
        _stop_sandbox(proc)
        raise
    lines = out.decode(errors="replace").strip().splitlines()
    stderr = err.decode(errors="replace")
    if proc.returncode != 0 or not lines:
        why = f"the sandbox exited with status {proc.returncode}"
        return _failure(exp_id, namespace, why, stderr, started)
    result: dict[str, Any] = json.loads(lines[-1])
    if result["status"] == ERROR:
        result["stderr"] = stderr[-4000:]
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _stop_sandbox(proc: subprocess.Popen[bytes]) -> None:
    """Ask the sandbox to stop (SIGTERM: it sweeps its processes), SIGKILL it after GRACE s.

    In a PID namespace the sandbox is ``unshare``'s child, PID 1 inside: it
    gets the signal because it handles it. A second interruption meanwhile
    goes straight to SIGKILL (in a namespace the kernel then kills the rest).
    """
    try:
        target = _namespace_init(proc.pid) or proc.pid
        _kill_if_ours(target, {os.getpid(), proc.pid}, signal.SIGTERM)
        proc.communicate(timeout=GRACE)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()  # our child, not yet reaped: the PID is still its own
            proc.wait()


def _namespace_init(unshare: int) -> int | None:
    """The child ``unshare`` forked (PID 1 of the namespace), None if not there."""
    try:
        with open(f"/proc/{unshare}/task/{unshare}/children") as kids:
            found = kids.read().split()
    except FileNotFoundError:
        return None
    return int(found[0]) if found else None


def _failure(exp_id: str, namespace: bool, why: str, stderr: str, started: float) -> dict[str, Any]:
    exp = find(exp_id)
    return {
        "id": exp_id,
        "claim": exp.claim,
        "seed": exp.seed,
        "article": SEEDS[exp.seed],
        "isolation": "pid-namespace" if namespace else "subreaper",
        "status": ERROR,
        "why": why,
        "observed": [],
        "data": {},
        "tables": [],
        "left_behind": [],
        "stderr": stderr[-4000:],
        "seconds": round(time.monotonic() - started, 3),
    }


class _OutOfTime(Exception):
    """The experiment ran past its budget."""


def _alarm(_signum: int, _frame: object) -> None:
    raise _OutOfTime(f"the experiment ran longer than {BUDGET:.0f} s")


class _Stopped(Exception):
    """Ctrl-C, SIGTERM or SIGHUP asked the lab to stop."""


def _stop(signum: int, _frame: object) -> None:
    """End the experiment once; later stop signals must not interrupt the sweep."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise _Stopped(f"stopped by {signal_name(signum)}")


def _descendants() -> list[int]:
    """Every process below us, parents before children."""
    found: list[int] = []
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as kids:
                    new = [int(k) for k in kids.read().split()]
            except FileNotFoundError:
                continue
            found += new
            todo += new
    return found


def _sweep(lab: Lab) -> list[dict[str, Any]]:
    """List what the experiment left behind, then kill and reap all of it."""
    left = lab.rows(_descendants())
    for _ in range(50):  # bounded: each round kills what it sees, reaps what comes back
        below = _descendants()
        if not below and not children():
            break
        family = {os.getpid(), *below}
        for pid in below:
            _kill_if_ours(pid, family)
        time.sleep(0.01)
        lab.reap_any()
    return [row for row in left if row["state"] is not None]


def _kill_if_ours(pid: int, family: set[int], sig: int = signal.SIGKILL) -> None:
    """Send *sig* to *pid* through a pidfd, if its parent is still one of *family*.

    The pidfd pins the process; its parent, read after opening it, proves the
    PID was not reaped and reused by a stranger between listing and opening.
    """
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
        if int(data[data.rfind(b")") + 2 :].split()[1]) in family:
            signal.pidfd_send_signal(fd, sig)
    except (FileNotFoundError, ProcessLookupError):
        pass  # it ended meanwhile: its parent, or we, reap it
    finally:
        os.close(fd)


def main() -> None:
    """The sandbox side: ``MODE EXPERIMENT_ID`` in ``sys.argv``; prints one JSON line."""
    mode, exp_id = sys.argv[1:3]
    namespace = mode == "namespace"
    default_signals()
    if not namespace:
        undertaker.become_subreaper()
    result_fd = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    exp = find(exp_id)
    lab = Lab(namespace)
    signal.signal(signal.SIGALRM, _alarm)
    for sig in STOP_SIGNALS:  # the sweep below must run: a signal ends the experiment only
        signal.signal(sig, _stop)
    signal.setitimer(signal.ITIMER_REAL, BUDGET)
    try:
        outcome = exp.run(lab)
        status, why = outcome.verdict, outcome.why
    except Skip as skip:
        status, why = SKIPPED, str(skip)
    except _Stopped as stopped:
        status, why = ERROR, str(stopped)
    except BaseException as err:  # noqa: BLE001  (reported as the experiment's error)
        traceback.print_exc()
        status, why = ERROR, f"{type(err).__name__}: {err}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    left = _sweep(lab)
    doc = {
        "id": exp.id,
        "claim": exp.claim,
        "seed": exp.seed,
        "article": SEEDS[exp.seed],
        "isolation": "pid-namespace" if namespace else "subreaper",
        "status": status,
        "why": why,
        "observed": lab.observed,
        "data": lab.data,
        "tables": lab.tables,
        "left_behind": left,
    }
    os.write(result_fd, json.dumps(doc).encode() + b"\n")
    sys.exit(0)
