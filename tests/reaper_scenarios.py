"""Reaper experiments, each run in a fresh process: ``python reaper_scenarios.py NAME ARGS``.

Running them apart keeps the test session's own children and SIGCHLD
disposition untouched (the naive handler would corrupt the session itself).
Each prints one JSON object.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from undertaker import Reaper
from undertaker.testing import proc_state, sleep_until

ORPHAN_MAKER = ["sh", "-c", "(exit 5) & (sleep 0.02; exit 6) & exit 0"]  # two orphans per run


def zombie_children() -> list[int]:
    """Our children that are zombies now."""
    found = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as listing:
                pids = [int(p) for p in listing.read().split()]
        except FileNotFoundError:
            continue  # a pool thread ended
        found += [pid for pid in pids if proc_state(pid) == "Z"]
    return found


def naive_handler(_signum: int, _frame: object) -> None:
    """The classic reap-everything handler the issue warns about."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stress(mode: str, calls: int, threads: int, makers: int, main_calls: int) -> dict[str, object]:
    """subprocess.run across threads while the main thread runs its own and makes orphans.

    The main thread's children are filed under the thread orphans go to, so
    only the ownership evidence (a blocked wait4, the grace period) keeps the
    Reaper off them; the pool threads' children are excluded by construction.
    """
    reaper = None
    if mode == "reaper":
        reaper = Reaper().start()
    else:
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # a subreaper too, for the same orphans
        signal.signal(signal.SIGCHLD, naive_handler)

    def run(code: int) -> bool:
        done = subprocess.run(["sh", "-c", f"exit {code}"], capture_output=True, check=False)
        return done.returncode == code

    started = time.monotonic()
    main_right = 0
    with ThreadPoolExecutor(threads) as pool:
        results = pool.map(lambda i: run(1 + i % 100), range(calls))
        for i in range(max(makers, main_calls)):
            if i < makers:
                subprocess.run(ORPHAN_MAKER, check=True)
            if i < main_calls:
                main_right += run(1 + (i * 7) % 100)  # in the main thread, during the pool's
        wrong = calls - sum(results)
    seconds = time.monotonic() - started
    made = 2 * makers
    reaped = 0
    if reaper is not None:
        sleep_until(lambda: sum(r.orphan for r in reaper.history) >= made, timeout=30)
        reaped = sum(r.orphan for r in reaper.history)
        codes = sorted({r.status.exit_code for r in reaper.history if r.orphan})
        reaper.stop()
    else:
        codes = []
        # The naive handler reaps the last orphans as they exit: wait for them,
        # so none outlives us to be re-parented to whoever runs this scenario.
        sleep_until(lambda: not any_children(), timeout=10)
    return {
        "wrong": wrong,
        "calls": calls,
        "main_wrong": main_calls - main_right,
        "main_calls": main_calls,
        "orphans_made": made,
        "orphans_reaped": reaped,
        "orphan_codes": codes,
        "zombies_left": len(zombie_children()),
        "seconds": round(seconds, 2),
    }


def any_children() -> bool:
    """Whether any process is still our child."""
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as listing:
                if listing.read().split():
                    return True
        except FileNotFoundError:
            continue  # a pool thread ended
    return False


def stdlib_owners() -> dict[str, object]:
    """Main-thread subprocess, multiprocessing, asyncio and os.waitpid under the Reaper."""
    with Reaper(grace=0.5) as reaper:
        runs = [
            subprocess.run(["sh", "-c", f"exit {n}"], capture_output=True, check=False).returncode
            for n in range(1, 51)
        ]
        context = multiprocessing.get_context("fork")
        process = context.Process(target=sys.exit, args=(5,))
        process.start()
        sleep_until(lambda: proc_state(process.pid or 0) == "Z", 10)
        time.sleep(2 * reaper.grace)  # the reaper sees it as a zombie well past its grace
        process.join(10)

        async def run_async() -> int | None:
            child = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.1; exit 9")
            return await child.wait()

        async_code = asyncio.run(run_async())
        pid = os.fork()
        if pid == 0:
            os._exit(4)
        _, raw = os.waitpid(pid, 0)  # blocked in wait4: the reaper must leave it alone
        stolen = [r.pid for r in reaper.history]
    return {
        "runs_wrong": sum(code != n for code, n in zip(runs, range(1, 51), strict=True)),
        "multiprocessing": process.exitcode,
        "asyncio": async_code,
        "waitpid": os.waitstatus_to_exitcode(raw),
        "reaped_by_reaper": stolen,
    }


def late_waiter(claim: bool) -> dict[str, object]:
    """Popen, then wait long after the child exits (once the old rule's misjudgement)."""
    with Reaper(grace=0.2) as reaper:
        popen = subprocess.Popen(["sh", "-c", "exit 7"])
        if claim:
            reaper.claim(popen.pid)
        sleep_until(lambda: proc_state(popen.pid) == "Z", 10)
        sleep_until(lambda: any(r.pid == popen.pid for r in reaper.history), 3)
        code = popen.wait()
    return {"returncode": code}


def manage() -> dict[str, object]:
    """A handed-over child is reaped when it exits, and its status reported."""
    seen: list[tuple[int, str]] = []
    with Reaper(orphans=False) as reaper:
        pid = os.fork()
        if pid == 0:
            time.sleep(0.2)
            os._exit(3)
        reaper.manage(pid, on_exit=lambda p, status: seen.append((p, str(status))))
        sleep_until(lambda: bool(seen), 10)
        state = proc_state(pid)
    return {"pid": pid, "seen": seen, "state_after": state}


def threadless_exited_first() -> dict[str, object]:
    """Threadless: a child that exits before manage() is reaped by manage() itself."""
    seen: list[tuple[int, str]] = []
    with Reaper(orphans=False, thread=False, sigchld=True) as reaper:
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        sleep_until(lambda: proc_state(pid) == "Z", 10)
        time.sleep(0.1)  # its SIGCHLD has been handled: nothing will wake the reaper again
        before = proc_state(pid)
        reaper.manage(pid, on_exit=lambda p, status: seen.append((p, str(status))))
        after = proc_state(pid)  # at once: no sleep, no further signal
        history = [(r.pid, str(r.status)) for r in reaper.history]
    return {"pid": pid, "before": before, "after": after, "seen": seen, "history": history}


def pidfds_open() -> int:
    """How many pidfds this process holds."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += "pidfd" in os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue  # the listing's own descriptor
    return count


def manage_twice(threaded: bool) -> dict[str, object]:
    """manage() twice for one PID is refused; manage() after stop() too; no pidfd leaks."""
    from undertaker.pidfd import pidfd_open  # noqa: PLC0415

    seen: list[tuple[str, int, str]] = []
    out: dict[str, object] = {"pidfds_before": pidfds_open()}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write_end)
        os.read(read_end, 1)  # exits when the parent closes the pipe
        os._exit(4)
    os.close(read_end)
    reaper = Reaper(orphans=False, thread=threaded, sigchld=True).start()
    reaper.manage(pid, on_exit=lambda p, st: seen.append(("first", p, str(st))))
    out["pidfds_managed"] = pidfds_open()
    try:
        reaper.manage(pid, pidfd=pidfd_open(pid), on_exit=lambda p, _: seen.append(("2nd", p, "")))
    except ValueError as err:
        out["second"] = str(err)
    out["pidfds_after_second"] = pidfds_open()
    os.close(write_end)
    sleep_until(lambda: bool(seen), 10)
    out["seen"] = seen
    out["state"] = proc_state(pid)
    out["pidfds_after_exit"] = pidfds_open()
    reaper.stop()
    late = os.fork()
    if late == 0:
        os._exit(5)
    try:
        reaper.manage(late, pidfd=pidfd_open(late))
    except RuntimeError as err:
        out["after_stop"] = str(err)
    out["pidfds_after_stop"] = pidfds_open()
    _, raw = os.waitpid(late, 0)  # refused: still ours to reap
    out["late_code"] = os.waitstatus_to_exitcode(raw)
    return out


def orphan_after_grace(threaded: bool) -> dict[str, object]:
    """One orphan, one SIGCHLD: reaped once its grace passes, with no further signal."""
    try:
        reaper = Reaper(thread=threaded, sigchld=True, grace=0.2).start()
    except ValueError as err:
        return {"refused": str(err)}
    try:
        maker = subprocess.Popen(
            ["sh", "-c", "(sleep 0.1; exit 5) & echo $!"], stdout=subprocess.PIPE
        )
        assert maker.stdout is not None
        orphan = int(maker.stdout.readline())
        maker.wait()
        started = time.monotonic()
        gone = sleep_until(lambda: proc_state(orphan) is None, 2)
        seconds = time.monotonic() - started
        codes = [r.status.exit_code for r in reaper.history if r.pid == orphan]
    finally:
        reaper.stop()
    return {"reaped": gone, "codes": codes, "seconds": round(seconds, 2)}


def handler_policy() -> dict[str, object]:
    """auto leaves an existing handler alone; True chains to it; stop restores."""

    def mine(signum: int, _frame: object) -> None:
        calls.append(signum)

    calls: list[int] = []
    out: dict[str, object] = {}
    with Reaper(orphans=False) as reaper:
        out["default_installed"] = reaper.sigchld_installed
    out["restored_default"] = signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
    signal.signal(signal.SIGCHLD, mine)
    with Reaper(orphans=False) as reaper:
        out["auto_with_handler"] = reaper.sigchld_installed
        out["still_mine"] = signal.getsignal(signal.SIGCHLD) == mine
    with Reaper(orphans=False, sigchld=True) as reaper:
        out["forced"] = reaper.sigchld_installed
        subprocess.run(["true"], check=True)
        sleep_until(lambda: bool(calls), 5)
        out["chained"] = bool(calls)
    out["restored_mine"] = signal.getsignal(signal.SIGCHLD) == mine
    return out


if __name__ == "__main__":
    name, args = sys.argv[1], sys.argv[2:]
    if name == "stress":
        result = stress(args[0], *(int(arg) for arg in args[1:5]))
    elif name == "manage_twice":
        result = manage_twice(args[0] == "thread")
    elif name == "orphan_after_grace":
        result = orphan_after_grace(args[0] == "thread")
    elif name == "late_waiter":
        result = late_waiter(args[0] == "claim")
    else:
        named = {
            "stdlib_owners": stdlib_owners,
            "manage": manage,
            "handler_policy": handler_policy,
            "threadless_exited_first": threadless_exited_first,
        }
        result = named[name]()
    print(json.dumps(result))
