"""Run ``undertaker run`` for real, as PID 1 of a new PID namespace or as a subreaper."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from undertaker.testing import sleep_until

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
INIT = [PYTHON, "-m", "undertaker", "run"]
# --kill-child: if unshare dies, the namespace's PID 1 gets SIGKILL, and with
# it everything inside: nothing a failed test starts can outlive it.
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
MODES = ("pid1", "subreaper")


def child(name: str, *args: str) -> list[str]:
    """The argv of a helper script in tests/init_children."""
    return [PYTHON, str(HERE / f"{name}.py"), *args]


def init_argv(mode: str, options: list[str], command: list[str]) -> list[str]:
    """``undertaker run OPTIONS -- COMMAND``, inside a new PID namespace for ``pid1``."""
    argv = [*INIT, *options, "--", *command]
    return [*UNSHARE, *argv] if mode == "pid1" else argv


def children_of(pid: int) -> list[int]:
    """Direct children of *pid* (CONFIG_PROC_CHILDREN)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(word) for word in listing.read().split()]
    except FileNotFoundError:
        return []


def state(pid: int) -> str | None:
    """State letter of *pid*, None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rfind(b")") + 2 :][:1].decode()


def end_tree(root: int, *, reap_root: bool = True) -> None:
    """SIGKILL *root* and its descendants (all started by the tests), then reap them.

    Each process is pinned with a pidfd first, so no PID can be reused under
    us. Once its parent is gone, an orphan comes to the test process (the
    session's subreaper), so the tree is reaped top-down: every wait returns
    after the parent's exit has handed the process here; those that their
    own parent reaped first are simply gone (ECHILD). With *reap_root*
    False, *root* is waited for but left unreaped (``WNOWAIT``), for its
    Popen to reap.
    """
    tree, todo = [], [root]
    while todo:
        tree.append(todo.pop(0))
        todo.extend(children_of(tree[-1]))
    pidfds = {}
    for pid in tree:
        try:
            pidfds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
    for pidfd in reversed(pidfds.values()):
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid, pidfd in pidfds.items():
        try:
            keep = os.WNOWAIT if pid == root and not reap_root else 0
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | keep)
        except ChildProcessError:  # reaped by its own parent before that died
            pass
        finally:
            os.close(pidfd)


class Init:
    """An init under test, with pipes to its stdin, stdout and stderr.

    ``pid`` is the init's PID as seen from here (in ``pid1`` mode, the
    child of ``unshare``). Leaving the block ends everything: stdin closed,
    then SIGKILL to what we started (by PID), then wait.
    """

    def __init__(
        self,
        mode: str,
        options: list[str],
        command: list[str],
        env: dict[str, str] | None = None,
        **popen: object,
    ) -> None:
        self.mode = mode
        self.argv = init_argv(mode, options, command)
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            **popen,
        )
        self.pid = self.proc.pid
        if mode == "pid1":
            assert sleep_until(lambda: bool(children_of(self.proc.pid)), 10), "no init started"
            self.pid = children_of(self.proc.pid)[0]
        self._buffer = b""
        self.stderr = ""
        self.returncode: int | None = None

    def readline(self, timeout: float = 10.0) -> str:
        """The next line the init's child wrote to stdout ('' at EOF)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"no line within {timeout}s; have {self._buffer!r}")
                chunk = os.read(fd, 65536)
                if not chunk:
                    line, self._buffer = self._buffer, b""
                    return line.decode()
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def expect(self, wanted: str, timeout: float = 10.0) -> str:
        """Read lines until one starts with *wanted*; return it."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.01))
            if line.startswith(wanted):
                return line
            if line == "" and not self._buffer:
                raise EOFError(f"EOF before {wanted!r}")

    def send(self, signum: int) -> None:
        """Signal the init (by the PID we started it with)."""
        os.kill(self.pid, signum)

    def write(self, text: str) -> None:
        """Write to the child's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait(self, timeout: float = 20.0) -> int:
        """Close stdin, wait for the init to exit; return its status and keep stderr."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            self.proc.stdin = None  # communicate() must not flush it again
        out, err = self.proc.communicate(timeout=timeout)
        self._buffer += out
        self.stderr = err.decode()
        self.returncode = self.proc.returncode
        return self.proc.returncode

    def rest(self) -> str:
        """Whatever is left on stdout (after wait)."""
        return self._buffer.decode()

    def __enter__(self) -> Init:  # noqa: PYI034  (Self needs 3.11)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            if self.mode == "subreaper":
                # The init's children come to us when it dies: end and reap them too.
                end_tree(self.proc.pid, reap_root=False)
            else:
                self.proc.kill()  # unshare, by PID: --kill-child ends the namespace
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass


def run_init(
    mode: str,
    options: list[str],
    command: list[str],
    timeout: float = 30,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the init to completion and capture its output."""
    return subprocess.run(
        init_argv(mode, options, command),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )
