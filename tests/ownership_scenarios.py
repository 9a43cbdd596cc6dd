"""The late-waiter patterns of issue 8 under a Reaper, while orphans storm in.

Run in a fresh process: ``python ownership_scenarios.py EVENTS`` with EVENTS
``on`` (the kernel's fork events as evidence; needs root) or ``off`` (walks
and sessions only). Prints one JSON object.

Every pattern waits for its own child long after the child exited (well past
the Reaper's grace), from the main thread: the thread orphans are filed under.
Meanwhile a second thread makes orphans of three kinds: slow ones (their parent
lives long enough for a descendant walk to see them), daemons (born in another
session) and fast ones (their parent exits at once: only fork events show
where they came from).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from undertaker import Reaper
from undertaker.testing import proc_state, sleep_until

SLOW = ["sh", "-c", "(sleep 0.6; exit 5) & sleep 0.3; exit 0"]  # seen by a walk first
DAEMON = ["sh", "-c", "setsid sh -c '(sleep 0.2; exit 6) & exit 0' & wait"]
FAST = ["sh", "-c", "(exit 7) & (sleep 0.05; exit 8) & exit 0"]  # parent exits at once
LATE = 1.0  # seconds each pattern waits after its child exited: twice the grace


def nine_popens() -> list[int | None]:
    """Start 9 jobs, then wait for each in turn; the first takes longest."""
    jobs = [
        subprocess.Popen(["sh", "-c", f"sleep {LATE if n == 1 else 0}; exit {n}"])
        for n in range(1, 10)
    ]
    return [job.wait() for job in jobs]


def run_with_background_job() -> int:
    """subprocess.run with capture_output while a background job holds the pipe."""
    return subprocess.run(
        ["sh", "-c", f"(sleep {LATE}) & exit 3"], capture_output=True, check=False
    ).returncode


def poll_slowly() -> int | None:
    """while p.poll() is None: sleep(LATE)."""
    child = subprocess.Popen(["sh", "-c", "exit 4"])
    while child.poll() is None:
        time.sleep(LATE)
    return child.returncode


def read_slowly() -> int:
    """Read the output long after the child exited, then wait()."""
    child = subprocess.Popen(["sh", "-c", "echo done; exit 5"], stdout=subprocess.PIPE)
    sleep_until(lambda: proc_state(child.pid) == "Z", 10)
    time.sleep(LATE)
    assert child.stdout is not None
    child.stdout.read()
    child.stdout.close()
    return child.wait()


def popen_close_late() -> int | None:
    """os.popen(...).close() after a delay: the exit code, shifted as os.wait does."""
    pipe = os.popen("echo hi; exit 6")  # noqa: S605  (the pattern under test)
    time.sleep(LATE)
    pipe.read()
    return pipe.close()


def fork_then_waitpid() -> int | str:
    """os.fork() and a late os.waitpid()."""
    pid = os.fork()
    if pid == 0:
        os._exit(9)
    time.sleep(LATE)
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError as err:
        return f"ChildProcessError: {err}"


EXPECTED: dict[str, object] = {
    "nine_popens": list(range(1, 10)),
    "run_with_background_job": 3,
    "poll_slowly": 4,
    "read_slowly": 5,
    "popen_close_late": 6 << 8,
    "fork_then_waitpid": 9,
}


def storm(kinds: list[list[str]], rounds: int, made: list[int]) -> None:
    """Make orphans from a second thread while the patterns run."""
    for _ in range(rounds):
        for argv in kinds:
            subprocess.run(argv, check=True)
            made[0] += 2 if argv is FAST else 1


def children() -> list[int]:
    """Our children now, over every thread."""
    found = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as listing:
                found += [int(p) for p in listing.read().split()]
        except FileNotFoundError:
            continue  # a thread ended
    return found


def zombie_children() -> list[int]:
    """Our children that are zombies now."""
    return [pid for pid in children() if proc_state(pid) == "Z"]


def clean_up() -> int:
    """Reap what the Reaper rightly left alone, waiting (bounded) for what still runs.

    Only orphans can be left: every pattern reaped its own child.
    """
    reaped = 0
    deadline = time.monotonic() + 5
    while (left := children()) and time.monotonic() < deadline:
        for pid in left:
            fd = os.pidfd_open(pid)
            try:
                reaped += os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is not None
            finally:
                os.close(fd)
        time.sleep(0.02)
    return reaped


def main(events: bool) -> dict[str, object]:
    """Run every pattern under one Reaper while the storm blows."""
    kinds = [SLOW, DAEMON, FAST] if events else [SLOW, DAEMON]
    made = [0]
    unproven: list[int] = []
    with Reaper(events=events, interval=0.1, on_unproven=unproven.append) as reaper:
        storm_thread = threading.Thread(target=storm, args=(kinds, 8, made))
        storm_thread.start()
        results = {name: globals()[name]() for name in EXPECTED}
        storm_thread.join()
        orphans = lambda: sum(r.orphan for r in reaper.history)  # noqa: E731
        sleep_until(lambda: orphans() >= made[0] and not zombie_children(), 10)
        zombies_after_storm = len(zombie_children())
        if not events:
            # Fast orphans without fork events: nothing proves their adoption.
            subprocess.run(FAST, check=True)
            sleep_until(lambda: len(unproven) >= 2, 5)
        history = list(reaper.history)
        left_unproven = reaper.unproven
        events_used = reaper.events
    wrong = {name: got for name, got in results.items() if got != EXPECTED[name]}
    return {
        "events": events_used,
        "wrong": wrong,
        "orphans_made": made[0],
        "orphans_reaped": sum(r.orphan for r in history),
        "orphan_codes": sorted({r.status.exit_code for r in history}),
        "evidence": sorted({" ".join(r.evidence.split()[:2]) for r in history}),
        "zombies_after_storm": zombies_after_storm,
        "unproven_reported": len(unproven),
        "unproven_listed": len(left_unproven),
        "left_alone_then_cleaned": clean_up(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] == "on")))
