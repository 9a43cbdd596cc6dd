"""The lab's vocabulary: an experiment, the bench it runs on, and its verdict.

An experiment is a function ``(lab) -> Verdict`` that runs inside the
sandbox (PID 1 of a private PID namespace, or a child subreaper), makes real
processes with :meth:`Lab.fork`, records what the kernel did with
:meth:`Lab.say`, :meth:`Lab.record` and :meth:`Lab.ps`, and returns a verdict
computed from those observations. It must reap or end everything it made.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from undertaker.census import kept_status
from undertaker.proc import scan
from undertaker.testing import proc_state, sleep_until
from undertaker.wait import WaitStatus, has_cap_sys_ptrace

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

CONFIRMED = "confirmed"
REFUTED = "refuted"
DEPENDS = "depends"
VERDICTS = (CONFIRMED, REFUTED, DEPENDS)
SKIPPED = "skipped"  # could not run here (privilege, kernel feature): not a failure
ERROR = "error"  # the experiment itself failed: a defect or a broken machine
# What stops the lab (Ctrl-C, kill, a closed terminal): the sandbox handles them.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# The seed articles, by the number their file names start with.
SEEDS = {
    "000": "Python generate a zombie (zh): an unjoined multiprocessing.Process",
    "001": "What is a defunct process (zh): kill -9, killing the parent, reboot",
    "002": "What is a zombie process? (en): states, SIGCHLD, killing the parent",
    "003": "Zombie processes (zh): a SIGCHLD handler and a forking echo server",
    "004": "Orphans and zombies, wait/waitpid (zh): SIG_IGN, double fork, "
    "three children, status macros, PDEATHSIG, terminal keys",
}


class Verdict(NamedTuple):
    """What the observations say about the claim, and one sentence why."""

    verdict: str  # one of VERDICTS
    why: str


class Skip(Exception):
    """The experiment cannot run here; the message says what it needs."""


@dataclass(frozen=True)
class Experiment:
    """One claim of a seed article, made runnable.

    Args:
        id: short stable name (``kill9-zombie``).
        claim: the article's claim in one line.
        seed: the article it comes from (a key of :data:`SEEDS`).
        run: the experiment; runs in the sandbox and returns a :class:`Verdict`.
    """

    id: str
    claim: str
    seed: str
    run: Callable[[Lab], Verdict]


def experiment(id_: str, seed: str, claim: str) -> Callable[[Callable[[Lab], Verdict]], Experiment]:
    """Decorate an experiment function into an :class:`Experiment`."""

    def wrap(fn: Callable[[Lab], Verdict]) -> Experiment:
        return Experiment(id_, claim, seed, fn)

    return wrap


def decide(condition: bool, yes: Verdict, no: Verdict) -> Verdict:
    """*yes* when the observed *condition* holds, else *no*."""
    return yes if condition else no


class Pipe:
    """A pipe that children write JSON lines to and the experiment reads."""

    def __init__(self) -> None:
        """Open the pipe; both ends are inherited by children forked after this."""
        self.read_fd, self.write_fd = os.pipe()
        self._buffer = b""

    def send(self, value: object) -> None:
        """Write *value* as one JSON line (atomic: well under PIPE_BUF)."""
        os.write(self.write_fd, json.dumps(value).encode() + b"\n")

    def recv(self, timeout: float = 5.0) -> Any:
        """Read one JSON line, or raise TimeoutError after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("no message from the experiment's process")
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                raise EOFError("the experiment's processes closed the pipe")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        """Close both ends in this process."""
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                continue  # already closed by a child's copy of this object: fine


class Gate:
    """A pipe that holds children until the experiment lets them go, one byte each."""

    def __init__(self) -> None:
        """Open the pipe; children forked after this can wait on it."""
        self.read_fd, self.write_fd = os.pipe()

    def wait(self) -> None:
        """Block (in a child) until released; returns at once if the lab is gone."""
        os.read(self.read_fd, 1)

    def release(self, count: int = 1) -> None:
        """Let *count* waiting children go."""
        os.write(self.write_fd, b"x" * count)


class Lab:
    """The bench an experiment runs on: forks, waits, observations and ``ps`` lines.

    Attributes:
        namespace: we are PID 1 of a private PID namespace (else a child subreaper).
        adopter: the PID orphans are re-parented to (1, or our own PID).
    """

    def __init__(self, namespace: bool) -> None:
        """Start recording; *namespace* says how the sandbox isolates us."""
        self.namespace = namespace
        self.adopter = os.getpid()
        self.root = os.geteuid() == 0
        self.observed: list[str] = []
        self.data: dict[str, Any] = {}
        self.tables: list[dict[str, Any]] = []
        self._privileged = has_cap_sys_ptrace()  # may read every zombie's exit status

    @property
    def adopter_name(self) -> str:
        """How to call the process orphans go to, in observations."""
        return "this namespace's init" if self.namespace else "the lab, a subreaper"

    def say(self, text: str) -> None:
        """Record one observation, a sentence a person reads."""
        self.observed.append(text)

    def record(self, **values: Any) -> None:
        """Record machine-readable observations (they go to ``--json``)."""
        self.data.update(values)

    def fork(self, target: Callable[..., int | None], *args: Any, name: str = "") -> int:
        """Fork a child that runs ``target(*args)`` and exits with its return value.

        *name* becomes its command name (``comm``, as ``ps`` shows it). An
        exception in the child is printed to stderr and exits 70.
        """
        # Blocked across fork: a stop signal sent to the new child before it has
        # dropped the sandbox's handlers waits, then gets the default action.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if pid == 0:
            code = 0
            try:
                restore_signals()
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                if name:
                    set_comm(name)
                code = target(*args) or 0
            except BaseException:  # noqa: BLE001  (the child must never return here)
                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)
        return pid

    def state(self, pid: int) -> str | None:
        """The state letter of *pid* (``Z``, ``S``...), None when it is gone."""
        return proc_state(pid)

    def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll *predicate* until it holds or *timeout* seconds pass."""
        return sleep_until(predicate, timeout)

    def wait_state(self, pid: int, letters: str, timeout: float = 5.0) -> bool:
        """Wait until *pid* shows one of the state *letters* (``"SR"``)."""
        return sleep_until(lambda: (self.state(pid) or "?") in letters, timeout)

    def reap(self, pid: int, timeout: float = 5.0) -> WaitStatus:
        """Wait for our child *pid* to end (SIGKILL after *timeout*) and return its status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return WaitStatus(status)
            time.sleep(0.002)
        os.kill(pid, 9)  # our own child, not yet reaped: the PID cannot have been reused
        return WaitStatus(os.waitpid(pid, 0)[1])

    def collect(self, pids: Iterable[int], timeout: float = 5.0) -> dict[int, WaitStatus]:
        """Reap children until every one of *pids* is reaped (SIGKILL after *timeout*).

        Other children that end meanwhile are reaped too and returned with them.
        """
        wanted = set(pids)
        found: dict[int, WaitStatus] = {}
        deadline = time.monotonic() + timeout
        while not wanted <= found.keys():
            if time.monotonic() >= deadline:
                for pid in (wanted - found.keys()) & set(children()):
                    os.kill(pid, 9)  # our unreaped child: its PID cannot be reused
                deadline = float("inf")
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                found[pid] = WaitStatus(status)
            else:
                time.sleep(0.002)
        return found

    def reap_any(self, timeout: float = 0.0) -> list[tuple[int, WaitStatus]]:
        """Reap every child that has ended (waiting up to *timeout* for the first)."""
        found: list[tuple[int, WaitStatus]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return found
            if pid:
                found.append((pid, WaitStatus(status)))
                continue
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.002)

    def rows(self, pids: Iterable[int]) -> list[dict[str, Any]]:
        """The process-table lines of *pids*, as ``undertaker ps --all`` reads them."""
        wanted = list(pids)
        snapshot = scan(owners=False)
        rows: list[dict[str, Any]] = []
        for pid in wanted:
            proc = snapshot.processes.get(pid)
            if proc is None:
                rows.append(
                    {
                        "pid": pid,
                        "ppid": None,
                        "pgid": None,
                        "state": None,
                        "comm": None,
                        "exit": None,
                    }
                )
                continue
            status = None
            if proc.is_zombie:
                status = kept_status(proc, snapshot.root, self._privileged)
            rows.append(
                {
                    "pid": pid,
                    "ppid": proc.ppid,
                    "pgid": proc.pgid,
                    "state": proc.state,
                    "comm": proc.comm,
                    "exit": None if status is None else str(status),
                }
            )
        return rows

    def children_rows(self, parent: int) -> list[dict[str, Any]]:
        """The process-table lines of *parent*'s children, by PID."""
        snapshot = scan(owners=False)
        return self.rows(p.pid for p in snapshot.children(parent))

    def ps(self, label: str, pids: Iterable[int]) -> list[dict[str, Any]]:
        """Record the process-table lines of *pids* under *label* and return them."""
        rows = self.rows(pids)
        self.tables.append({"label": label, "rows": rows})
        return rows


def restore_signals() -> None:
    """Give a child the usual dispositions back: the sandbox's stop handlers are its own.

    An experiment relies on defaults (SIGHUP's ends the PDEATHSIG child).
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def default_signals() -> None:
    """Undo the signal dispositions and mask the lab inherited.

    ``nohup`` ignores SIGHUP, a background job of a script SIGINT and
    SIGQUIT, some supervisors SIGCHLD or a blocked mask; an ignored signal
    stays ignored across fork and exec, down to the experiment's processes,
    and would change what the kernel is seen to do. SIGPIPE and SIGXFSZ stay
    as Python sets them.
    """
    keep = {signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ}
    for sig in signal.valid_signals() - keep:
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def set_comm(name: str) -> None:
    """Set our command name (as ``prctl(PR_SET_NAME)``), so the tables say who is who."""
    with open("/proc/self/comm", "w") as comm:
        comm.write(name[:15])


def children() -> list[int]:
    """Our children (live and zombie), from ``/proc/self/task/*/children``."""
    found: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as kids:
                found += [int(pid) for pid in kids.read().split()]
        except FileNotFoundError:
            continue  # the thread ended since the listing
    return found


def sleeps_in_wait(pid: int) -> bool:
    """Whether *pid* sleeps in wait4, by its ``wchan``.

    Only the function name counts: ``0`` is also what a running task shows,
    so the state letter read next could be a sleep that is not a wait.
    Where ``wchan`` is hidden, callers wait until their timeout instead.
    """
    try:
        with open(f"/proc/{pid}/wchan") as wchan:
            return wchan.read().strip() == "do_wait"
    except OSError:
        return False


def zombie_children() -> list[int]:
    """Our children that are zombies (a child reaped meanwhile is skipped)."""
    found = []
    for pid in children():
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                data = stat.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # reaped (by a handler of ours) since the listing
        if data[data.rfind(b")") + 2 :][:1] == b"Z":
            found.append(pid)
    return found
