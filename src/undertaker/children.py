"""Children you cannot lose: ``spawn()`` returns a ``Child`` watched through a pidfd.

A ``Child`` holds a pidfd from the moment ``spawn`` returns, so waiting
sleeps in the kernel (with a timeout, or awaited from asyncio), signals can
never hit a later process that reused the PID, and a ``Child`` dropped
without ``wait()`` is handed to a background reaper instead of lingering as a
zombie. ``subprocess`` does the fork and exec (and reports exec errors);
``subprocess`` is imported on the first ``spawn``, not at ``import undertaker``.
The pidfd is opened by the child itself before it execs and passed back over
a socket, so no other code can reap the child before we hold it.
"""

from __future__ import annotations

import _thread
import collections
import os
import signal
import threading
import weakref
from typing import IO, TYPE_CHECKING, Any, TypeGuard

from undertaker._control_errors import NotSupported, StatusLost, TimeoutExpired
from undertaker._errors import NoSuchProcess
from undertaker.pidfd import can_use_pidfd, send_signal, wait_readable
from undertaker.wait import WaitStatus

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Generator, Mapping, Sequence
    from types import TracebackType

    from undertaker.reaper import Reaped, Reaper

    StrPath = str | os.PathLike[str]

_REAP = os.WEXITED | os.WNOHANG

# Children dropped without wait() wait here for the janitor. Their finalizers
# only append (atomic) and wake it: garbage collection runs a finalizer on
# whatever thread it interrupts, which may hold _janitor_lock or the janitor's
# own lock, so a finalizer that took either could deadlock.
_forgotten: collections.deque[_State] = collections.deque()
_janitor_lock = threading.Lock()
_janitor: Reaper | None = None
_starting = False  # a helper thread is on its way to start the janitor


def _alive(janitor: Reaper | None) -> TypeGuard[Reaper]:
    return janitor is not None and janitor.running and janitor._pid == os.getpid()  # noqa: SLF001


def _janitor_reaper() -> Reaper:
    """The process-wide reaper for forgotten children, started on first need."""
    global _janitor  # noqa: PLW0603  (one janitor per process, created lazily)
    from undertaker.reaper import Reaped, Reaper  # noqa: PLC0415  (only once a child is forgotten)

    class Janitor(Reaper):
        def reap(self) -> list[Reaped]:
            # On our own thread (or in stop()), holding no lock. Children that
            # had exited before the hand-over are reaped there: report them like
            # those reaped in the pass, in history and to on_reap.
            early = [Reaped(*found, orphan=False) for found in _hand_over_forgotten(self)]
            self._report([(record, record.pid, None) for record in early])
            return early + super().reap()

    with _janitor_lock:
        janitor = _janitor
        if not _alive(janitor):
            janitor = _janitor = Janitor(orphans=False, sigchld=False).start()
        return janitor


def _hand_over_forgotten(janitor: Reaper) -> list[tuple[int, WaitStatus]]:
    """Give the janitor every queued child; runs in normal code, where locks are safe.

    Returns (pid, status) of the children found already exited and reaped here.
    """
    reaped = []
    while _forgotten and janitor.running:
        state = _forgotten.popleft()
        # Race: the child may exit before or after the janitor gets here (a
        # short-lived child, or a janitor thread slow to be scheduled). If it
        # exited before, it is reaped right here and never reaches manage(), so
        # the janitor's pass never sees it: the caller must report it itself, or
        # it would be missing from history and on_reap depending on timing.
        with state.lock:
            if state.pidfd < 0 or state.done():
                continue  # reaped by its owner after all (close(), then poll())
            status = state.reap_locked()
            if status is not None:
                reaped.append((state.pid, status))  # reaped now, pidfd closed
            if state.done():
                continue  # reaped now, or lost: other code reaped it
            # From now on only the janitor reaps (two reapers would make one
            # of them see ECHILD and report a false StatusLost). The Child
            # keeps its own pidfd: a Child closed but still referenced can
            # still be signalled, and waited for through on_exit.
            fd = os.dup(state.pidfd)
            state.handed = True
            state.janitor = janitor
        try:
            janitor.manage(state.pid, pidfd=fd, on_exit=state.on_exit)
        except NoSuchProcess:
            state.on_exit(state.pid, None)  # other code reaped it in the meantime
    return reaped


def _start_janitor() -> None:
    """On a fresh helper thread (holding no lock): start the janitor and wake it."""
    global _starting  # noqa: PLW0603
    try:
        _janitor_reaper()._wake()  # noqa: SLF001
    finally:
        _starting = False


def _forget(state: _State) -> None:
    """Finalizer of an unwaited Child: queue it for the janitor, taking no lock."""
    global _starting  # noqa: PLW0603
    if state.pidfd < 0 or state.handed:
        return  # reaped already (the pidfd is closed then), or handed over
    _forgotten.append(state)
    janitor = _janitor
    if _alive(janitor):
        janitor._wake()  # noqa: SLF001  (a write to its pipe: no lock)
    elif not _starting:
        # Starting a thread takes locks of its own: leave it to a helper thread.
        _starting = True
        try:
            _thread.start_new_thread(_start_janitor, ())
        except RuntimeError:
            _starting = False  # interpreter shutting down: init reaps what is left


def _after_fork_in_child() -> None:
    global _starting  # noqa: PLW0603
    _forgotten.clear()  # the parent's children: not ours to reap
    _starting = False


os.register_at_fork(after_in_child=_after_fork_in_child)


class _State:
    """What a Child knows; shared with its finalizer, which must not keep the Child alive."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pidfd = pidfd
        self.status: WaitStatus | None = None
        self.lost = False
        self.handed = False  # the janitor reaps it (close(), or the Child was dropped)
        self.janitor: Reaper | None = None  # the one it was handed to
        self.finished = threading.Event()  # set once status or lost is known
        self.lock = threading.Lock()

    def finish(self, status: WaitStatus | None) -> None:
        """Record the outcome and tell Popen, so it neither waits nor warns later."""
        self.status = status
        self.lost = status is None
        returncode = None if status is None else status.returncode
        self.popen.returncode = 0 if returncode is None else returncode
        self.finished.set()

    def try_reap(self) -> WaitStatus | None:
        """Reap if the child has exited, and close the pidfd then; never blocks."""
        with self.lock:
            if self.done() or self.pidfd < 0 or self.handed:
                return self.status  # done, or the janitor reaps it
            return self.reap_locked()

    def reap_locked(self) -> WaitStatus | None:
        """``try_reap`` once the lock is held and the pidfd known open: the status reaped now."""
        try:
            result = os.waitid(os.P_PIDFD, self.pidfd, _REAP)
        except ChildProcessError:
            self.finish(None)
        else:
            if result is None:
                return None  # still running
            self.finish(WaitStatus.from_waitid(result))
        # Reaped (or lost): the pidfd has nothing left to tell. Closed under
        # the lock, so no other thread can use its number once it is reused.
        os.close(self.pidfd)
        self.pidfd = -1
        return self.status

    def watch_fd(self) -> int:
        """A private copy of the pidfd to sleep on; -1 once reaped or handed over.

        A copy, because another thread may reap the child and close the pidfd
        while we sleep, and its number may then be given to an unrelated file.
        """
        with self.lock:
            if self.done() or self.pidfd < 0:
                return -1
            return os.dup(self.pidfd)

    def on_exit(self, _pid: int, status: WaitStatus | None) -> None:
        """The janitor reaped it: record the outcome, close our pidfd."""
        with self.lock:
            if self.status is not None:
                return
            self.finish(status)
            if self.pidfd >= 0:
                os.close(self.pidfd)
                self.pidfd = -1

    def await_janitor(self) -> None:
        """After a hand-over, wait until the janitor reports the child, which has exited.

        In slices, so a janitor stopped before it reaped (``Reaper.stop`` leaves
        handed-over children) does not leave us waiting for ever: we reap then.
        """
        while not self.finished.wait(0.5):
            if self.janitor is None or not self.janitor.running:
                with self.lock:
                    if not self.done() and self.pidfd >= 0:
                        self.reap_locked()
                return

    def done(self) -> bool:
        return self.status is not None or self.lost


class Child:
    """A child process started by ``spawn``, reaped exactly once, by us.

    Attributes:
        pid: the process ID (valid for signalling only through this object).
        args: the argument vector.
        stdin, stdout, stderr: pipe ends when ``subprocess.PIPE`` was asked for.
    """

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int) -> None:
        """Wrap a started ``Popen``; use ``spawn()`` rather than this."""
        self._state = _State(popen, pidfd)
        self.pid = popen.pid
        self.args = popen.args
        self.stdin: IO[bytes] | None = popen.stdin
        self.stdout: IO[bytes] | None = popen.stdout
        self.stderr: IO[bytes] | None = popen.stderr
        # Dropped without wait(): reap it anyway. Not at interpreter exit: a
        # child still running then is re-parented and reaped by its new parent.
        self._finalizer = weakref.finalize(self, _forget, self._state)
        self._finalizer.atexit = False

    def __repr__(self) -> str:
        """``<Child pid=42 running>`` or ``<Child pid=42 exited 3>``."""
        state = "running" if self._state.status is None else str(self._state.status)
        return f"<Child pid={self.pid} {'status lost' if self._state.lost else state}>"

    @property
    def status(self) -> WaitStatus | None:
        """The exit status once reaped (by ``wait``, ``poll`` or ``terminate``), else None."""
        return self._state.status

    @property
    def returncode(self) -> int | None:
        """Like ``Popen.returncode``: the exit code, ``-N`` for signal N, None while running."""
        status = self._state.status
        return None if status is None else status.returncode

    def _result(self) -> WaitStatus:
        if self._state.status is None:
            raise StatusLost(self.pid)
        return self._state.status

    def poll(self) -> WaitStatus | None:
        """Reap the child if it has exited, without blocking.

        Raises:
            StatusLost: other code reaped it first (a ``waitpid(-1)`` loop).
        """
        self._state.try_reap()
        return self._result() if self._state.done() else None

    def wait(self, timeout: float | None = None) -> WaitStatus:
        """Wait for the child to exit and reap it.

        Sleeps on the pidfd (no polling loop). Safe to call from several
        threads: one reaps, all get the same status. If SIGCHLD is set to
        ``SIG_IGN`` the kernel reaps the child itself and ``StatusLost`` is raised.

        Args:
            timeout: seconds; None or ``math.inf`` waits for ever.

        Returns:
            The decoded exit status.

        Raises:
            TimeoutExpired: still running after *timeout* seconds (it is not killed).
            StatusLost: other code reaped it first.
        """
        fd = self._state.watch_fd()
        if fd >= 0:
            try:
                if not wait_readable(fd, timeout):
                    raise TimeoutExpired(self.pid, timeout)
            finally:
                os.close(fd)
            self._state.try_reap()
            if not self._state.done():
                self._state.await_janitor()  # exited: the janitor reaps it at once
        return self._result()

    async def wait_async(self, timeout: float | None = None) -> WaitStatus:
        """``wait()`` for asyncio: the pidfd is watched by the running event loop.

        Raises:
            TimeoutExpired: still running after *timeout* seconds.
            StatusLost: other code reaped it first.
        """
        import asyncio  # noqa: PLC0415  (only asyncio users pay for it)

        if self._state.try_reap() is not None:
            return self._result()
        fd = self._state.watch_fd()
        if fd < 0:
            return self._result()
        try:
            loop = asyncio.get_running_loop()
            exited = loop.create_future()

            def readable() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(fd, readable)
            try:
                await asyncio.wait_for(exited, timeout)
            except asyncio.TimeoutError:
                raise TimeoutExpired(self.pid, timeout) from None
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
        self._state.try_reap()
        if not self._state.done():
            await loop.run_in_executor(None, self._state.await_janitor)
        return self._result()

    def __await__(self) -> Generator[Any, None, WaitStatus]:
        """``status = await child`` waits without a timeout."""
        return self.wait_async().__await__()

    def send_signal(self, sig: int) -> None:
        """Send *sig* through the pidfd; does nothing once the child is reaped."""
        with self._state.lock:
            if self._state.done() or self._state.pidfd < 0:
                return
            try:
                send_signal(self._state.pidfd, sig, self.pid)
            except NoSuchProcess:
                pass  # reaped by other code a moment ago; poll() will say so

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(signal.SIGKILL)

    def terminate(self, grace: float = 5.0) -> WaitStatus:
        """Stop the child: SIGTERM, then SIGKILL if it is still running after *grace* seconds.

        Args:
            grace: seconds to let it clean up after SIGTERM.

        Returns:
            Its exit status (``killed by SIGTERM``, or whatever its handler chose).

        Raises:
            StatusLost: other code reaped it first.
        """
        if self.poll() is not None:
            return self._result()
        self.send_signal(signal.SIGTERM)
        try:
            return self.wait(grace)
        except TimeoutExpired:
            self.kill()
            return self.wait()

    def close(self) -> None:
        """Close our pipe ends; an unreaped child goes to the background reaper.

        The ``Child`` stays usable: ``wait()`` returns the status the reaper
        got, ``terminate()`` and ``send_signal()`` still reach the child.
        """
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self._state.try_reap()  # exited already: no need to wake the janitor
        self._finalizer()

    def __enter__(self) -> Child:  # noqa: PYI034  (Self needs 3.11)
        """Use as ``with spawn(...) as child:``."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Terminate the child if it still runs (SIGTERM, 5 s, SIGKILL), then close."""
        try:
            if not self._state.done():
                self.terminate()
        except StatusLost:
            pass  # nothing left to clean up
        finally:
            self.close()


def spawn(
    argv: Sequence[StrPath],
    *,
    parent_death_signal: int | None = None,
    new_session: bool = False,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    pass_fds: Sequence[int] = (),
) -> Child:
    """Start a program as a child that is always reaped.

    The child opens its own pidfd before exec (see ``_child_pidfd``), so the
    ``Child`` returned holds the process started, even if other code reaped
    it at once (its ``wait()`` then raises ``StatusLost``) and its PID was
    reused. That runs a tiny Python function in the child, which makes
    ``subprocess`` use ``fork`` instead of ``vfork``.

    Args:
        argv: the program and its arguments; the program is looked up on PATH.
        parent_death_signal: a signal the kernel sends the child when we die
            (``prctl(PR_SET_PDEATHSIG)``), e.g. ``signal.SIGTERM``. Race: it
            fires when the *thread* that called ``spawn`` exits, so spawn from a
            long-lived thread.
        new_session: start the child in a new session (``setsid``), so
            terminal signals sent to our process group do not reach it.
        cwd: working directory of the child.
        env: environment of the child (default: ours).
        stdin: ``None`` (inherit), ``subprocess.PIPE``, ``subprocess.DEVNULL``,
            a file descriptor or a file object; the same for *stdout*, *stderr*.
        stdout: as *stdin*.
        stderr: as *stdin*, plus ``subprocess.STDOUT``.
        pass_fds: extra descriptors the child keeps; all others are closed.

    Returns:
        The running ``Child``.

    Raises:
        FileNotFoundError: the program does not exist (likewise ``PermissionError``).
        NotSupported: pidfds (Linux 5.3) or prctl are not available here.
        OSError: the new child could not open its pidfd (``EMFILE``...).
        ChildProcessError: the new child was killed before it could exec.
        ValueError: *parent_death_signal* is not a signal number.
    """
    # Imports subprocess and socket: kept out of ``import undertaker``.
    from undertaker._child_pidfd import popen_with_pidfd  # noqa: PLC0415

    if parent_death_signal is not None and int(parent_death_signal) not in signal.valid_signals():
        raise ValueError(f"not a signal number: {parent_death_signal}")
    if not can_use_pidfd():
        raise NotSupported("pidfd_open", "needs Linux 5.3+ and no seccomp filter against it")
    popen, pidfd = popen_with_pidfd(
        list(argv),
        parent_death_signal,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=env,
        start_new_session=new_session,
        pass_fds=tuple(pass_fds),
    )
    return Child(popen, pidfd)
