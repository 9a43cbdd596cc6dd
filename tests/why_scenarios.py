"""Real parents that do not reap, one per cause ``undertaker why`` must tell apart.

Each is a Python process that makes zombies its own way, prints
``{"pid", "zombies", "reaped"}`` once every zombie shows ``Z``, then blocks
on stdin. At EOF it restores SIGCHLD, reaps every child and exits, so
closing the scenario cleans everything up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from undertaker.testing import proc_state, sleep_until

_PARENT = r"""
import json, os, signal, sys, time
mode, count = sys.argv[1], int(sys.argv[2])
def state(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return "?"
    return data[data.rfind(b")") + 2:][:1].decode()
reaped = []
if mode == "handler-noreap":
    signal.signal(signal.SIGCHLD, lambda *_: None)
elif mode == "handler-once":
    def once(*_):
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)  # the bug: one child per signal
        except ChildProcessError:
            return
        if pid:
            reaped.append(pid)
    signal.signal(signal.SIGCHLD, once)
if mode == "leader":
    import ctypes, threading
    def live():
        for _ in range(count):
            if os.fork() == 0:
                os._exit(5)
        time.sleep(0.3)
        sys.stdout.write(json.dumps({"pid": os.getpid(), "zombies": [], "reaped": []}) + "\n")
        sys.stdout.flush()
        while os.read(0, 4096):
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                os._exit(0)
    threading.Thread(target=live).start()
    ctypes.CDLL(None).pthread_exit(None)
if mode in ("blocked", "handler-once"):
    # Blocked while the burst happens, SIGCHLD stays pending once for all the
    # children: the kernel keeps one pending instance of a standard signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGRTMIN + 3})
if mode == "wait-other":  # a live child it will wait for, blocking on stdin like us
    other = os.fork()
    if other == 0:
        while os.read(0, 4096):
            pass
        os._exit(0)
    reaped.append(other)  # not a zombie: left out of the report's list
gate_r, gate_w = os.pipe()
kids = []
for i in range(count):
    pid = os.fork()
    if pid == 0:
        os.close(gate_w)
        os.read(gate_r, 1)  # every child exits at once when the gate closes: a burst
        os._exit(7)
    kids.append(pid)
os.close(gate_r)
os.close(gate_w)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if all(p in reaped or state(p) in ("Z", "?") for p in kids):
        break
    time.sleep(0.005)
if mode == "handler-once":
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # one delivery, one reap
time.sleep(0.2)  # let the handler run
if mode == "ign-late":
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
zombies = [p for p in kids if p not in reaped and state(p) == "Z"]
sys.stdout.write(json.dumps({"pid": os.getpid(), "zombies": zombies, "reaped": reaped}) + "\n")
sys.stdout.flush()
try:
    if mode == "wait-other":
        os.waitpid(other, 0)  # the bug: waits for one child only
    if mode == "grow":  # one more zombie every 50 ms, at most 100, until EOF
        import select
        for _ in range(100):
            if select.select([0], [], [], 0.05)[0] and not os.read(0, 4096):
                break
            if os.fork() == 0:
                os._exit(1)
    while os.read(0, 4096):
        pass
finally:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
"""

# Attach to a process as its tracer and hold it in a tracing stop until EOF.
_TRACER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = int(sys.argv[1])
if libc.ptrace(0x4206, pid, None, None) != 0:  # PTRACE_SEIZE
    sys.exit("seize failed: errno %d" % ctypes.get_errno())
libc.ptrace(0x4207, pid, None, None)  # PTRACE_INTERRUPT: a stop the parent does not see
os.waitpid(pid, 0x40000000)  # __WALL
sys.stdout.write("ready\n")
sys.stdout.flush()
try:
    while os.read(0, 4096):
        pass
finally:
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
"""


class Scenario:
    """A parent process in one of the modes of ``_PARENT``, closed by EOF on stdin."""

    def __init__(self, mode: str, count: int = 3, prefix: tuple[str, ...] = ()) -> None:
        """Start the parent (under *prefix*, e.g. ``unshare``) and wait for its report."""
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", "-S", "-c", _PARENT, mode, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"scenario {mode} failed to start")
        report: dict[str, Any] = json.loads(line)
        self.inner_pid: int = report["pid"]
        self.zombies: list[int] = report["zombies"]
        self.reaped: list[int] = report["reaped"]
        # Under unshare the report speaks the namespace's PIDs; find the host's.
        self.pid = self.inner_pid if not prefix else children(self.proc.pid)[0]

    def close(self) -> None:
        """EOF to the parent: it reaps everything and exits; wait for it."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Scenario:  # noqa: PYI034  (final class, no subclass)
        """Use as a context manager."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Clean up."""
        self.close()


class Tracer:
    """A process that holds *pid* in a ptrace stop until closed (then detaches)."""

    def __init__(self, pid: int) -> None:
        """Attach and wait until the target shows ``t``."""
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _TRACER, str(pid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline() != b"ready\n":
            self.close()
            raise RuntimeError("tracer failed to attach")
        assert sleep_until(lambda: proc_state(pid) == "t")

    def close(self) -> None:
        """Detach and exit."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def send_signal(pid: int, sig: int) -> None:
    """Signal *pid* through a pidfd (a process the test started and still holds)."""
    fd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)


def wait_state(pid: int, letter: str) -> None:
    """Wait until *pid* shows state *letter*."""
    assert sleep_until(lambda: proc_state(pid) == letter), proc_state(pid)


# Wrapped around a scenario's code, which leaves its unwaited children in
# ``kids``: print them once they are zombies, block on stdin, reap all at EOF.
_TAIL = r"""
import json as _j, os as _o, signal as _s, sys as _y
_y.stdout.write(_j.dumps([k if isinstance(k, int) else k.pid for k in kids]) + "\n")
_y.stdout.flush()
while _o.read(0, 4096):
    pass
_s.signal(_s.SIGCHLD, _s.SIG_DFL)
while True:
    try:
        _o.waitpid(-1, 0)
    except ChildProcessError:
        break
"""


def children(pid: int) -> list[int]:
    """The PIDs of *pid*'s children (live or zombie)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


# Code for python_parent: two children that exit 2 at once, never waited for.
TWO_ZOMBIES = r"""
import os
kids = []
for _ in range(2):
    kid = os.fork()
    if kid == 0:
        os._exit(2)
    kids.append(kid)
"""


@contextmanager
def python_parent(code: str, prefix: tuple[str, ...] = ()) -> Iterator[tuple[int, list[int]]]:
    """Run *code* (which fills ``kids``) in a Python parent; yield its PID and zombie PIDs.

    With a *prefix* (``unshare ... --fork``) the parent is the prefix's only child.
    """
    parent = subprocess.Popen(
        [*prefix, sys.executable, "-c", code + _TAIL], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    assert parent.stdin is not None
    try:
        count = len(json.loads(parent.stdout.readline()))
        pid = children(parent.pid)[0] if prefix else parent.pid
        kids = children(pid)
        assert len(kids) == count
        assert sleep_until(lambda: all(proc_state(k) == "Z" for k in kids), 10)
        assert sleep_until(lambda: proc_state(pid) == "S", 10)  # settled in its read
        yield pid, kids
    finally:
        parent.stdin.close()
        parent.wait(30)
        parent.stdout.close()


@contextmanager
def named_cgroup(*names: str) -> Iterator[Path]:
    """Real nested cgroup v2 directories named as a runtime names its own, removed afterwards."""
    base = Path("/sys/fs/cgroup/unified")
    if not (base / "cgroup.procs").exists():
        base = Path("/sys/fs/cgroup")
    if not (base / "cgroup.procs").exists() or os.geteuid() != 0:
        pytest.skip("needs root and a writable cgroup v2 hierarchy")
    made = [base / f"undertaker-test-{os.getpid()}-{names[0]}"]
    for name in names[1:]:
        made.append(made[-1] / name)
    made[-1].mkdir(parents=True)
    try:
        yield made[-1]
    finally:
        for path in reversed(made):
            sleep_until(lambda p=path: not (p / "cgroup.procs").read_text(), 5)  # type: ignore[misc]
            path.rmdir()
