"""Real zombies on demand, for tests, benchmarks, demos and ``undertaker lab``.

Every workload here is a real process tree, bounded in size, and cleans up
after itself: leaving the ``with`` block closes the parent's stdin, the parent
reaps every child it made and exits, and we wait for it. Nothing here mocks
the kernel.

>>> with ZombieParent([ZombieSpec(code=7)]) as parent:  # doctest: +SKIP
...     print(parent.zombies)  # PIDs in state Z, children of parent.pid
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

# The parent process. It forks what the spec asks for, waits until every
# zombie really shows Z, reports, then blocks on stdin. At EOF it reaps all
# its children (sleepers see the same EOF and exit) and exits.
_PARENT_SCRIPT = r"""
import ctypes, json, os, signal, sys, time
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def state(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return "?"
    return data[data.rfind(b")") + 2:][:1].decode()
if spec["name"]:
    libc.prctl(15, spec["name"].encode("utf-8", "surrogateescape"), 0, 0, 0)
if spec["ignore_sigchld"]:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
if spec["block_sigchld"]:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
sleepers = []
for _ in range(spec["sleepers"]):
    pid = os.fork()
    if pid == 0:
        try:
            os.read(0, 1)
        finally:
            os._exit(0)
    sleepers.append(pid)
zombies = []
for z in spec["zombies"]:
    pid = os.fork()
    if pid == 0:
        if z["name"] is not None:
            libc.prctl(15, z["name"].encode("utf-8", "surrogateescape"), 0, 0, 0)
        if z["signal"]:
            if z["signal"] not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(z["signal"], signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {z["signal"]})
            os.kill(os.getpid(), z["signal"])
            time.sleep(5)
        os._exit(z["code"])
    zombies.append(pid)
deadline = time.monotonic() + 30
if not spec["ignore_sigchld"]:
    for pid in zombies:
        while state(pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.001)
sys.stdout.write(json.dumps({"pid": os.getpid(), "zombies": zombies, "sleepers": sleepers}) + "\n")
sys.stdout.flush()
try:
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

# A process whose main thread calls pthread_exit while a second thread lives
# on: /proc shows the leader as Z, yet the process is alive. ctypes releases
# the GIL around the call, so the other Python thread keeps running.
_LEADER_SCRIPT = r"""
import ctypes, os, sys, threading
def live():
    try:
        os.read(0, 1)
    finally:
        os._exit(0)
threading.Thread(target=live).start()
sys.stdout.write("%d\n" % os.getpid())
sys.stdout.flush()
ctypes.CDLL(None).pthread_exit(None)
"""


@dataclass(frozen=True)
class ZombieSpec:
    """How one child should die: exit *code*, or be killed by *signal*; named *name*."""

    code: int = 0
    signal: int = 0
    name: str | None = None


def sleep_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll *predicate* every millisecond or so until it is true or *timeout* passes."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def proc_state(pid: int, root: str = "/proc") -> str | None:
    """Return the state letter of *pid*, or None when it does not exist."""
    try:
        with open(f"{root}/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rfind(b")") + 2 :][:1].decode()


class _Workload:
    """A child process we own, fed through stdin; closing stdin ends it."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )

    def _readline(self) -> str:
        assert self.proc.stdout is not None  # noqa: S101  (Popen with stdout=PIPE)
        line = self.proc.stdout.readline().decode()
        if not line:
            self.close()
            raise RuntimeError("workload process exited before it was ready")
        return line

    def close(self) -> None:
        """End the workload: EOF on stdin, then wait (SIGKILL after the timeout)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by PID we hold: safe
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


_F = TypeVar("_F", bound="_Fixture")


class _Fixture:
    """A workload that starts on entering a ``with`` block and ends on leaving it."""

    _workload: _Workload | None = None

    def start(self: _F) -> _F:
        """Start the workload and wait until it is ready."""
        raise NotImplementedError

    def close(self) -> None:
        """End the workload (its parent reaps what it made) and wait for it."""
        if self._workload is not None:
            self._workload.close()
            self._workload = None

    def __enter__(self: _F) -> _F:
        """Start on entering the block."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Clean up on leaving the block."""
        self.close()


@dataclass
class ZombieParent(_Fixture):
    """A parent process that makes zombies and never waits for them (until closed).

    Args:
        zombies: one spec per zombie child.
        sleepers: live children that block until the workload is closed.
        name: the parent's own command name (``prctl(PR_SET_NAME)``).
        ignore_sigchld: set SIGCHLD to SIG_IGN first (the kernel then reaps).
        block_sigchld: block SIGCHLD in the parent (it shows in SigBlk).
        python: the interpreter to run the parent with.
        timeout: seconds to wait for start-up and for clean-up.
    """

    zombies_spec: Sequence[ZombieSpec] = ()
    sleepers_count: int = 0
    name: str | None = None
    ignore_sigchld: bool = False
    block_sigchld: bool = False
    python: str = sys.executable
    timeout: float = 60.0
    pid: int = field(init=False, default=0)
    zombies: list[int] = field(init=False, default_factory=list)
    sleepers: list[int] = field(init=False, default_factory=list)
    _workload: _Workload | None = field(init=False, default=None, repr=False)

    def start(self) -> ZombieParent:
        """Start the parent and wait until every zombie shows state Z."""
        spec: dict[str, Any] = {
            "zombies": [asdict(z) for z in self.zombies_spec],
            "sleepers": self.sleepers_count,
            "name": self.name,
            "ignore_sigchld": self.ignore_sigchld,
            "block_sigchld": self.block_sigchld,
        }
        self._workload = _Workload(
            [self.python, "-I", "-S", "-c", _PARENT_SCRIPT, json.dumps(spec)], self.timeout
        )
        report = json.loads(self._workload._readline())  # noqa: SLF001
        self.pid, self.zombies, self.sleepers = report["pid"], report["zombies"], report["sleepers"]
        return self


class ZombieLeader(_Fixture):
    """A live process whose thread-group leader has exited (``ps`` shows ``Zl``)."""

    def __init__(self, python: str = sys.executable, timeout: float = 30.0) -> None:
        """Prepare; the process starts on ``start()`` or entering the block."""
        self.python = python
        self.timeout = timeout
        self.pid = 0
        self._workload: _Workload | None = None

    def start(self) -> ZombieLeader:
        """Start the process and wait until its leader shows Z."""
        self._workload = _Workload([self.python, "-I", "-S", "-c", _LEADER_SCRIPT], self.timeout)
        self.pid = int(self._workload._readline())  # noqa: SLF001
        if not sleep_until(lambda: proc_state(self.pid) == "Z", self.timeout):
            self.close()
            raise RuntimeError("the leader thread did not exit")
        return self


def populate(extra: int, zombies: int, parents: int) -> list[ZombieParent]:
    """Start *parents* zombie parents holding *zombies* zombies and the rest as sleepers.

    Used by the benchmarks: ``extra`` processes in all (parents included).
    The caller must ``close()`` every returned parent.
    """
    sleepers = max(extra - zombies - parents, 0)
    started: list[ZombieParent] = []
    try:
        for i in range(parents):
            share_z = zombies // parents + (1 if i < zombies % parents else 0)
            share_s = sleepers // parents + (1 if i < sleepers % parents else 0)
            parent = ZombieParent(
                [ZombieSpec(code=i % 256)] * share_z, share_s, name=f"zparent{i}", timeout=120
            )
            started.append(parent.start())
    except BaseException:
        for parent in started:
            parent.close()
        raise
    return started


def pid_exists(pid: int) -> bool:
    """Whether *pid* exists (a zombie counts); only for tests, racy by nature."""
    return os.path.exists(f"/proc/{pid}")
