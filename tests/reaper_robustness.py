"""Reaper robustness experiments, each in a fresh process: ``python reaper_robustness.py NAME``.

fork() while it runs, descriptor exhaustion, stop() from a signal handler,
a replaced handler, orphans still running at stop(), a SIGCHLD handler from
C, and claims keyed on identity. Each prints one JSON object.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
import warnings

from undertaker import Reaper
from undertaker.testing import proc_state, sleep_until

# An orphan a descendant walk sees first: its parent lives 0.3 s. (It must live
# longer than that: sh reaps a background job that ends while it waits.)
WALKED_ORPHAN = "(sleep {life}; exit {code}) >/dev/null 2>&1 & echo $!; sleep 0.3"


def make_orphan(life: float, code: int) -> int:
    """Start an orphan-to-be whose parent outlives a walk; return its PID once adopted."""
    assert life > 0.35
    maker = subprocess.run(
        ["sh", "-c", WALKED_ORPHAN.format(life=life, code=code)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(maker.stdout)


def adopted(reaper: Reaper) -> list[int]:
    """The children this Reaper holds proven adopted now (under its lock)."""
    with reaper._lock:
        children = reaper._orphans.children() if reaper._orphans else []
    return [c.pid for c in children if c.verdict.kind == "adopted"]


def fork_copies(count: int) -> dict[str, object]:
    """Fork while the reaper thread is busy; the child's copy must be inert and never hang."""
    hung = broken = 0
    with Reaper(interval=0.001) as reaper:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                signal.alarm(3)  # a hang ends in SIGALRM, seen by the parent
                ok = not reaper.running
                helper = os.fork() or os._exit(0)
                try:
                    reaper.manage(helper)
                    ok = False
                except RuntimeError:
                    pass
                reaper.reap()
                reaper.stop()
                os.waitpid(helper, 0)
                os._exit(0 if ok else 1)
            _, raw = os.waitpid(pid, 0)
            hung += os.WIFSIGNALED(raw)
            broken += os.WIFEXITED(raw) and os.WEXITSTATUS(raw) != 0
        still_running = reaper.running
    return {"forks": count, "hung": hung, "broken": broken, "parent_running": still_running}


def emfile() -> dict[str, object]:
    """Run out of descriptors long enough for passes to fail; the thread must survive."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    with Reaper(interval=0.05) as reaper:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass  # the table is full
        failed = sleep_until(lambda: len(reaper.errors) > 0, 5)
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        orphan = make_orphan(0.5, 5)
        reaped = sleep_until(lambda: any(r.pid == orphan for r in reaper.history), 5)
        alive = reaper._thread is not None and reaper._thread.is_alive()
    return {"errors_seen": failed, "thread_alive": alive, "orphan_reaped_after": reaped}


def bad_intervals() -> dict[str, object]:
    """Impossible intervals and graces are refused up front."""
    refused = {}
    for name, kwargs in {
        "interval_inf": {"interval": float("inf")},
        "interval_nan": {"interval": float("nan")},
        "interval_zero": {"interval": 0},
        "grace_negative": {"grace": -1},
    }.items():
        try:
            Reaper(**kwargs)  # type: ignore[arg-type]
            refused[name] = False
        except ValueError:
            refused[name] = True
    with Reaper(interval=1e12) as reaper:  # huge but finite: capped, the thread lives
        time.sleep(0.2)
        alive = reaper._thread is not None and reaper._thread.is_alive()
    return {"refused": refused, "huge_interval_thread_alive": alive}


def stop_from_handler(threaded: bool) -> dict[str, object]:
    """A signal handler calls stop() while the main thread is inside the Reaper's lock."""
    reaper = Reaper(orphans=threaded, thread=threaded, sigchld=True).start()
    stopped_in_handler = []

    def on_alarm(_signum: int, _frame: object) -> None:
        reaper.stop()
        stopped_in_handler.append(True)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    started = time.monotonic()
    passes = 0
    try:
        while reaper.running and time.monotonic() - started < 10:
            reaper.reap()  # holds the lock for most of its time
            passes += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    return {
        "stopped": not reaper.running,
        "handler_returned": bool(stopped_in_handler),
        "seconds": round(time.monotonic() - started, 2),
        "passes": passes,
    }


def replaced_handler() -> dict[str, object]:
    """Threadless: other code replaces the Reaper's SIGCHLD handler; we must say so."""
    with Reaper(orphans=False, thread=False, sigchld=True) as reaper:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reaper.manage(pid)
        sleep_until(lambda: proc_state(pid) == "Z", 5)
        reaper.reap()
    return {"warnings": [str(w.message) for w in caught], "reaped": proc_state(pid) is None}


def orphan_running_at_stop() -> dict[str, object]:
    """stop() while an adopted orphan runs: it must not end as a zombie nobody reaps."""
    with Reaper(events=False, interval=0.05) as reaper:
        orphan = make_orphan(0.8, 4)
        was_adopted = sleep_until(lambda: bool(adopted(reaper)), 3)
    state_at_stop = proc_state(orphan)
    gone = sleep_until(lambda: proc_state(orphan) is None, 5)
    return {"adopted": was_adopted, "at_stop": state_at_stop, "reaped_later": gone}


def c_handler() -> dict[str, object]:
    """A SIGCHLD handler installed from C (Python still says SIG_DFL) is left alone."""
    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    harmless = ctypes.cast(libc.srand, ctypes.c_void_p).value  # void f(unsigned): a no-op handler
    libc.signal(signal.SIGCHLD, harmless)
    python_says = str(signal.getsignal(signal.SIGCHLD))
    with Reaper(orphans=False) as reaper:
        installed = reaper.sigchld_installed
    kept = libc.signal(signal.SIGCHLD, harmless) == harmless  # the old one is returned
    try:
        Reaper(orphans=False, sigchld=True).start().stop()
        forced = "started"
    except Exception as err:
        forced = type(err).__name__
    return {"python_says": python_says, "auto_installed": installed, "kept": kept, "forced": forced}


def claim_identity() -> dict[str, object]:
    """A claim ends with its process: a later orphan reusing the PID is reaped (PID 1 here)."""
    with Reaper(interval=0.05) as reaper:
        first = make_orphan(0.5, 5)
        sleep_until(lambda: bool(adopted(reaper)), 3)
        reaper.claim(first)
        sleep_until(lambda: proc_state(first) == "Z", 5)
        time.sleep(0.3)  # several passes: a claimed orphan stays for its claimant
        kept_for_claimant = proc_state(first) == "Z"
        _, raw = os.waitpid(first, 0)
        time.sleep(0.2)
        claims_after = len(reaper._orphans.claimed) if reaper._orphans else -1
        # The next orphan gets the same PID: sh takes first - 1, its subshell first.
        with open("/proc/sys/kernel/ns_last_pid", "w") as last:
            last.write(str(first - 2))
        second = make_orphan(0.5, 6)
        reaped = sleep_until(lambda: any(r.pid == second for r in reaper.history), 5)
    return {
        "kept_for_claimant": kept_for_claimant,
        "claimant_code": os.waitstatus_to_exitcode(raw),
        "claims_after": claims_after,
        "same_pid": second == first,
        "second_reaped": reaped,
    }


if __name__ == "__main__":
    name, args = sys.argv[1], sys.argv[2:]
    if name == "fork_copies":
        result = fork_copies(int(args[0]))
    elif name == "stop_from_handler":
        result = stop_from_handler(args[0] == "thread")
    else:
        result = globals()[name]()
    print(json.dumps(result))
