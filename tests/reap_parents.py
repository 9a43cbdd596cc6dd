"""A parent for the reap tests: makes zombies, then blocks in one way and reports.

Usage: python reap_parents.py MODE ZOMBIES

It forks one live child (which exits 5 when the parent closes its pipe) and
ZOMBIES children that exit 3, 4, ...; prints a READY line (JSON) once every
zombie shows Z; runs MODE for about one second or until stdin brings a line;
then checks its own children: a waitpid for each zombie (expected: ECHILD,
the tests reaped them) and for the live child (expected: exited 5). Prints a
RESULT line (JSON) and exits 0. Nothing here knows it is being traced. Mode
"handler" is a parent whose SIGCHLD handler reaps one child per signal and
lost the coalesced signals of the others.
"""

import ctypes
import json
import os
import select
import signal
import socket
import sys
import threading
import time

PERIOD = 1.0


def state(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return "?"
    return data[data.rfind(b")") + 2 :][:1].decode()


def spin(stop_at, out):
    count, total = 0, 0
    while time.monotonic() < stop_at:
        total += sum(range(100))
        count += 1
    out.append(total == 4950 * count)


HANDLED = [0]
LIBC = ctypes.CDLL(None, use_errno=True)


class Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


def _count(*_):
    HANDLED[0] += 1


def block(mode, listener):  # noqa: PLR0911  (one return per mode)
    """Run the blocking call of MODE; return what it returned, JSON-friendly."""
    if mode in ("sleep", "waitpid"):
        return time.sleep(PERIOD)
    if mode == "nanosleep":  # a relative sleep: the kernel resumes it via restart_syscall
        ret = LIBC.nanosleep(ctypes.byref(Timespec(1, 0)), None)
        return [ret, ctypes.get_errno()]
    if mode == "signals":  # sleeps while SIGUSR1s arrive; returns how many ran
        time.sleep(PERIOD)
        return HANDLED[0]
    if mode == "handler":  # sleeps through SIGCHLDs (PEP 475) until stdin closes
        return os.read(0, 1).decode()
    if mode == "accept":
        conn, _ = listener.accept()
        with conn:
            return conn.recv(16).decode()
    if mode == "pipe":
        return os.read(0, 16).decode()
    if mode == "select":
        ready = select.select([0], [], [], PERIOD)
        return [len(x) for x in ready]
    if mode == "epoll":
        with select.epoll() as poller:
            poller.register(0, select.EPOLLIN)
            return poller.poll(PERIOD)
    if mode == "waitlive":  # blocked in wait4 for one live child while the zombies wait
        late = os.fork()
        if late == 0:
            time.sleep(PERIOD)
            os._exit(6)
        return os.waitpid(late, 0)[1]
    if mode == "busy":
        out = []
        spin(time.monotonic() + PERIOD, out)
        return out
    if mode == "threads":
        out = []
        stop_at = time.monotonic() + PERIOD
        workers = [threading.Thread(target=spin, args=(stop_at, out)) for _ in range(2)]
        for worker in workers:
            worker.start()
        spin(stop_at, out)
        for worker in workers:
            worker.join()
        return out
    raise SystemExit(f"unknown mode {mode}")


def main():
    mode, count = sys.argv[1], int(sys.argv[2])
    keep_r, keep_w = os.pipe()
    other = os.fork()
    if other == 0:
        os.close(keep_w)
        os.read(keep_r, 1)
        os._exit(5)
    os.close(keep_r)
    if mode == "signals":
        signal.signal(signal.SIGUSR1, _count)
    if mode == "handler":
        # A handler that reaps one child per signal, and SIGCHLD blocked while
        # the children die: their signals coalesce into one, and zombies stay.
        signal.signal(signal.SIGCHLD, lambda *_: os.waitpid(-1, os.WNOHANG))
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    zombies = []
    for i in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(3 + i % 200)
        zombies.append(pid)
    deadline = time.monotonic() + 10
    while any(state(z) != "Z" for z in zombies) and time.monotonic() < deadline:
        time.sleep(0.001)
    if mode == "handler":
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        while sum(state(z) == "Z" for z in zombies) == count:
            time.sleep(0.001)
        zombies = [z for z in zombies if state(z) == "Z"]
    listener = socket.create_server(("127.0.0.1", 0)) if mode == "accept" else None
    port = listener.getsockname()[1] if listener else 0
    ready = {"pid": os.getpid(), "zombies": zombies, "other": other, "port": port}
    print(json.dumps(ready), flush=True)
    start = time.monotonic()
    result = block(mode, listener)
    duration = time.monotonic() - start
    waits = {}
    for z in zombies:
        try:
            waits[z] = os.waitpid(z, 0)[1]
        except ChildProcessError:
            waits[z] = "ECHILD"
    os.close(keep_w)
    try:
        other_status = os.waitpid(other, 0)[1]
    except ChildProcessError:  # mode "handler": its handler may reap it first
        other_status = "ECHILD"
    report = {"result": result, "duration": duration, "waits": waits, "other": other_status}
    print(json.dumps(report), flush=True)


main()
