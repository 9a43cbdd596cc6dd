"""Session-wide guards: a clean environment, and no process leaks from tests.

The test process becomes a child subreaper, so anything a test orphans is
re-parented here instead of escaping to the machine's init. When the session
ends, every child still here was leaked by some test: live ones are killed
(through pidfds: they are ours) and every one is reaped, and the session fails
with the list, so a leak cannot pass unnoticed.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import time
from collections.abc import Iterator

import pytest

from undertaker.testing import proc_state

PR_SET_CHILD_SUBREAPER = 36
_LEAKED: list[str] = []


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop our own variables in case the user runs tests from a polluted shell."""
    for name in list(os.environ):
        if name.startswith("UNDERTAKER_") or name == "NO_COLOR":
            monkeypatch.delenv(name)


def _children() -> set[int]:
    found: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as kids:
                found.update(int(pid) for pid in kids.read().split())
        except FileNotFoundError:
            continue  # the thread ended since the listing
    return found


def _started(pid: int) -> str:
    """Start time of *pid* (clock ticks after boot), with the PID an identity; "" if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


# By (PID, start time): the first test after which a child of the session was
# seen. A leak found at the end then names the test that most likely made it.
_FIRST_SEEN: dict[tuple[int, str], str] = {}


@pytest.fixture(autouse=True)
def note_children(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, note which children of the session exist (for the leak report)."""
    yield
    for pid in _children():
        _FIRST_SEEN.setdefault((pid, _started(pid)), request.node.nodeid)


def _end(pidfd: int) -> None:
    """SIGINT first (a Python process then runs its finalizers), SIGKILL if still there.

    A leaked process subscribed to process events and killed outright leaves
    the kernel generating events for every fork and exit until reboot.
    """
    signal.pidfd_send_signal(pidfd, signal.SIGINT)
    if not select.select([pidfd], [], [], 1.0)[0]:  # readable once it has exited
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


def _sweep(grace: float) -> list[str]:
    """Give owners *grace* seconds to reap, then kill and reap what is left."""
    deadline = time.monotonic() + grace
    while _children() and time.monotonic() < deadline:
        time.sleep(0.05)  # background reapers (Child's janitor) may still be at work
    leaked = []
    for pid in sorted(_children()):
        state = proc_state(pid)
        seen = _FIRST_SEEN.get((pid, _started(pid)))
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                argv = cmd.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/comm") as comm:
                argv = argv or f"[{comm.read().strip()}]"  # a zombie has no command line
            if state != "Z":
                _end(pidfd)
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        except (ProcessLookupError, ChildProcessError, FileNotFoundError):
            argv = "?"  # its owner reaped it after all
        finally:
            os.close(pidfd)
        where = f" (first seen after {seen})" if seen else ""
        leaked.append(f"pid {pid} ({'zombie' if state == 'Z' else 'running'}): {argv[:120]}{where}")
    return leaked


@pytest.fixture(scope="session", autouse=True)
def subreaper() -> Iterator[None]:
    """Adopt every orphan the tests make; at the end, sweep and remember leaks."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    _LEAKED.extend(_sweep(grace=3.0))


# A leaked process fails the run: leaking zombies is not our business.
FAIL_ON_LEAKS = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Report (and with FAIL_ON_LEAKS, fail on) processes that tests leaked."""
    if _LEAKED:
        print("\nprocesses leaked by tests:", *_LEAKED, sep="\n  ", file=sys.stderr)
        if FAIL_ON_LEAKS and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
