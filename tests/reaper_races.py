"""Reaper races found in review, each in a fresh process: ``python reaper_races.py NAME``.

Claims and waiters at ``stop()``, PID reuse under a cached verdict or within
one clock tick, a SIGCHLD nested in the threadless handler, two threads
stopping, a callback raising SystemExit, a failed start, the clocks of a
time namespace, and orphans arriving during stop(). Those named ``*_ns``
run as PID 1 of a private PID namespace (``ns_last_pid`` forces PID reuse).
Each prints one JSON object.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

from undertaker import Reaper
from undertaker._lineage import children_of
from undertaker.prctl import is_subreaper
from undertaker.proc import read_start_ticks
from undertaker.testing import proc_state


def next_pid_is(pid: int) -> None:
    """Make the next fork in this PID namespace get *pid*."""
    with open("/proc/sys/kernel/ns_last_pid", "w") as last:
        last.write(str(pid - 1))


def orphan(life: float, code: int) -> tuple[int, int]:
    """Fork a child that forks a grandchild and exits: the grandchild is adopted."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(life)
            os._exit(code)
        os.write(write_end, str(grandchild).encode())
        time.sleep(0.1)  # long enough for a walk to see the grandchild under us
        os._exit(0)
    os.close(write_end)
    grandchild = int(os.read(read_end, 32))
    os.close(read_end)
    return grandchild, child


def adopt(reaper: Reaper, life: float, code: int) -> int:
    """An orphan that the Reaper has judged adopted."""
    grandchild, child = orphan(life, code)
    reaper.reap()  # the walk sees the grandchild under its parent
    os.waitpid(child, 0)
    time.sleep(0.05)
    reaper.reap()
    return grandchild


def claimed_at_stop() -> dict[str, object]:
    """A claimed orphan still running at stop() stays for its claimant."""
    reaper = Reaper(interval=100).start()
    pid = adopt(reaper, 0.5, 7)
    reaper.claim(pid)
    reaper.stop()
    return {"claimant_got": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}


def waited_at_stop(tries: int) -> dict[str, object]:
    """A thread blocked in waitpid() for an orphan at stop() keeps its status."""
    lost = 0
    for _ in range(tries):
        reaper = Reaper(interval=100).start()
        pid = adopt(reaper, 0.4, 7)
        got: list[object] = []

        def wait(pid: int = pid, got: list[object] = got) -> None:
            try:
                got.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            except ChildProcessError:
                got.append("ECHILD")

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.05)  # the waiter is blocked in wait4 now
        reaper.stop()
        waiter.join()
        lost += got != [7]
    return {"tries": tries, "lost": lost}


def reused_after_claim_ns() -> dict[str, object]:
    """A claimed orphan reaped by the program, its PID reused by our own fork before stop()."""
    reaper = Reaper(sigchld=False, interval=100).start()
    pid = adopt(reaper, 60, 0)
    reaper.claim(pid)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    next_pid_is(pid)
    own = os.fork()
    if own == 0:
        time.sleep(0.5)
        os._exit(3)
    reaper.stop()
    time.sleep(1.0)  # our child exits meanwhile; we wait for it late, as programs may
    try:
        code: object = os.waitstatus_to_exitcode(os.waitpid(own, 0)[1])
    except ChildProcessError:
        code = "ECHILD"
    return {"same_pid": own == pid, "own_child_got": code}


def same_tick_ns(tries: int) -> dict[str, object]:
    """A grandchild seen by a walk, reaped, its PID reused by our fork within the tick."""
    reaper = Reaper(sigchld=False, interval=100, grace=0.1).start()
    stolen = same_tick = 0
    for _ in range(tries):
        time.sleep(0.05)  # let the walk's throttle expire
        go_r, go_w = os.pipe()
        ack_r, ack_w = os.pipe()
        child = os.fork()
        if child == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.write(ack_w, f"{grandchild} {read_start_ticks(grandchild)}".encode())
            os.read(go_r, 1)
            os.waitpid(grandchild, 0)
            os.write(ack_w, b"k")
            time.sleep(0.5)
            os._exit(0)
        grandchild, start = map(int, os.read(ack_r, 64).split())
        reaper.reap()  # the walk records the grandchild under its parent
        os.write(go_w, b"x")
        os.read(ack_r, 1)  # its parent reaped it
        next_pid_is(grandchild)
        own = os.fork()
        if own == 0:
            os._exit(5)
        same_tick += own == grandchild and read_start_ticks(own) == start
        time.sleep(0.05)
        reaper.reap()
        time.sleep(0.15)  # past the grace
        reaper.reap()
        try:
            os.waitpid(own, 0)
        except ChildProcessError:
            stolen += 1
        os.waitpid(child, 0)
        for fd in (go_r, go_w, ack_r, ack_w):
            os.close(fd)
    reaper.stop()
    return {"tries": tries, "same_tick": same_tick, "stolen": stolen}


def nested_sigchld(rounds: int) -> dict[str, object]:
    """Threadless: a SIGCHLD arriving during the handler's own pass is not lost."""
    fillers = []
    for _ in range(1000):  # many handed-over children make each pass long
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        fillers.append(pid)
    stuck = 0
    for n in range(rounds):
        reaper = Reaper(orphans=False, thread=False, sigchld=True).start()
        at = time.time() + 0.3
        late = os.fork()
        if late == 0:
            time.sleep(max(at + 0.0001 * (n + 1) - time.time(), 0))  # across the pass
            os._exit(2)
        first = os.fork()
        if first == 0:
            time.sleep(max(at - time.time(), 0))
            os._exit(1)
        for pid in (late, first, *fillers):
            reaper.manage(pid)
        time.sleep(0.6)
        # On a loaded machine the late child may not even have exited yet: it
        # is stuck only if it stays unreaped a whole second after its death.
        deadline, died = time.monotonic() + 10, None
        while late in reaper._handed and time.monotonic() < deadline:
            if died is None and proc_state(late) == "Z":
                died = time.monotonic()
            if died is not None and time.monotonic() - died > 1.0:
                break
            time.sleep(0.01)
        stuck += late in reaper._handed
        reaper.reap()
        reaper.stop()
    for pid in fillers:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return {"rounds": rounds, "stuck": stuck}


def two_stops() -> dict[str, object]:
    """A second thread's stop() waits for the first: when it returns, all is stopped."""

    def slow(_record: object) -> None:
        time.sleep(1.0)  # the reaper thread sits in a callback while stop() waits

    reaper = Reaper(on_reap=slow).start()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    reaper.manage(pid)
    time.sleep(0.3)
    first = threading.Thread(target=reaper.stop)
    first.start()
    time.sleep(0.05)
    reaper.stop()
    state = {"running": reaper.running, "subreaper": is_subreaper()}
    first.join()
    return state


def callback_exits() -> dict[str, object]:
    """on_reap raising SystemExit does not end the reaper thread."""
    first = 0

    def on_reap(record: object) -> None:
        if getattr(record, "pid", 0) == first:
            sys.exit("callback says stop")

    reaper = Reaper(on_reap=on_reap).start()
    first = os.fork() or os._exit(1)
    reaper.manage(first)
    time.sleep(0.5)
    second = os.fork() or os._exit(2)
    reaper.manage(second)
    time.sleep(1.0)
    alive = reaper._thread is not None and reaper._thread.is_alive()
    result = {
        "thread_alive": alive,
        "errors": [type(err).__name__ for err in reaper.errors],
        "reaped": sorted(str(r.status) for r in reaper.history),
    }
    reaper.stop()
    return result


def failed_start() -> dict[str, object]:
    """start() failing half-way (no descriptors left) undoes what it did."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = is_subreaper()  # loads ctypes now, while files can still be opened
    held = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    os.close(held.pop())  # one left: enough to subscribe, not for the wake-up pipe
    reaper = Reaper()
    try:
        reaper.start()
        error = "none"
    except OSError as err:
        error = os.strerror(err.errno or 0)
    state = {"error": error, "running": reaper.running, "subreaper": is_subreaper() or before}
    for fd in held:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    reaper.start()
    state["restarted"] = reaper.running
    reaper.stop()
    return state


def fast_orphans(count: int) -> dict[str, object]:
    """Orphans whose parent exits at once: proven by fork events (a time namespace too)."""
    with Reaper(grace=0.2) as reaper:
        for _ in range(count):
            child = os.fork()
            if child == 0:
                if os.fork() == 0:
                    time.sleep(0.2)
                    os._exit(4)
                os._exit(0)
            os.waitpid(child, 0)
        deadline = time.monotonic() + 5
        while sum(r.orphan for r in reaper.history) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        events = reaper.events
        reaped = sum(r.orphan for r in reaper.history)
        unproven = reaper.unproven
    for pid in unproven:
        os.waitpid(pid, 0)  # left alone: ours to clean up
    return {"events": events, "reaped": reaped, "unproven": len(unproven)}


# Makes 300 orphans in a row, each of a `sh` that exits at once: run under an
# init (a subreaper above us) so that those arriving after stop() are its own.
ORPHAN_MAKER = "i=0; while [ $i -lt 300 ]; do sh -c '(sleep 0.2; exit 5) &'; i=$((i+1)); done"


def orphans_arriving_at_stop(rounds: int) -> dict[str, object]:
    """Orphans keep coming while stop() runs: none may become a zombie nobody reaps."""
    events, zombies = True, 0
    for _ in range(rounds):
        reaper = Reaper(interval=0.05).start()
        events = events and reaper.events
        maker = subprocess.Popen(["sh", "-c", ORPHAN_MAKER])
        time.sleep(0.3)
        reaper.stop()
        maker.kill()
        maker.wait()
        time.sleep(0.5)  # every orphan (0.2 s of life) has exited by now
        left = [pid for pid in children_of(os.getpid()) if proc_state(pid) == "Z"]
        zombies += len(left)
        for pid in left:
            os.waitpid(pid, 0)
    return {"rounds": rounds, "events": events, "zombies": zombies}


if __name__ == "__main__":
    name, args = sys.argv[1], [int(arg) for arg in sys.argv[2:]]
    print(json.dumps(globals()[name](*args)))
