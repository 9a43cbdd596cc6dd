"""A cooperative reaper: reap adopted orphans and handed-over children, steal nothing.

The usual fix for zombies, a SIGCHLD handler looping on ``waitpid(-1)``,
takes exit statuses that ``subprocess``, ``multiprocessing`` and ``asyncio``
are about to ask for: they then see ECHILD and report 0. ``Reaper`` instead
enumerates its children per thread (``/proc/self/task/*/children``), peeks
at each with ``waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`` (peeking
``P_ALL`` only ever shows the oldest zombie) and reaps only:

* children handed to it with ``manage()`` (reaped as soon as they exit), and
* adopted orphans (with ``orphans=True``): zombie children filed under the
  thread orphans are re-parented to, that stayed zombies for ``grace``
  seconds, and that no other code visibly waits for (``_ownership``).

The ownership rules, and where they can be wrong, are in ``docs/library.md``.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Literal, NamedTuple

from undertaker import _ownership
from undertaker._control_errors import NotSupported
from undertaker._errors import NoSuchProcess, UndertakerError
from undertaker.pidfd import can_use_pidfd, pidfd_open
from undertaker.prctl import become_subreaper, is_subreaper
from undertaker.proc import read_start_ticks
from undertaker.wait import WaitStatus

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType

    ExitCallback = Callable[[int, "WaitStatus | None"], None]


_PEEK = os.WEXITED | os.WNOHANG | os.WNOWAIT
_REAP = os.WEXITED | os.WNOHANG


class Reaped(NamedTuple):
    """One child the reaper collected."""

    pid: int
    status: WaitStatus
    orphan: bool  # True: an adopted orphan; False: handed over with manage()


class _Managed(NamedTuple):
    pidfd: int  # -1 without pidfd support
    on_exit: ExitCallback | None


class Reaper:
    """Reap adopted orphans and the children you hand over, without stealing statuses.

    Use it as a context manager, or call ``start()`` and ``stop()``; both work
    from any thread. By default it runs a small daemon thread that wakes on
    SIGCHLD (when it may install a handler), on the pidfds of managed children,
    and every *interval* seconds.

    >>> with Reaper() as reaper:  # doctest: +SKIP
    ...     reaper.manage(os.fork() or os._exit(0))

    Races: see ``docs/library.md``. In short, a zombie child of the main
    thread that no thread is blocked waiting for, that no pidfd and no
    ``multiprocessing`` object refers to, and that is still unreaped after
    *grace* seconds is taken for an orphan: ``p = Popen(...); sleep(10);
    p.wait()`` in the main thread then reads 0. ``claim(p.pid)`` prevents it.

    Args:
        orphans: reap adopted orphans, not only children handed over.
        subreaper: with *orphans*, make this process a child subreaper while
            running, so orphaned descendants come to us rather than to init.
        grace: seconds an orphan candidate must stay a zombie before we reap it;
            covers the gap between a child's exit and its owner's ``waitpid``.
        interval: seconds between scans when nothing wakes us.
        sigchld: ``"auto"`` installs a wake-up handler only from the main thread
            and only if SIGCHLD has its default disposition (never replacing a
            handler); True installs it anyway, chaining to an existing Python
            handler; False never touches SIGCHLD.
        thread: run the background thread. Without it, reaping happens in the
            SIGCHLD handler (main thread), in ``manage()`` and in ``reap()``;
            it then needs ``orphans=False``: an orphan candidate must be looked
            at again once *grace* has passed, and without the thread nothing
            would wake us then (no further SIGCHLD may ever come).
        on_reap: called as ``on_reap(reaped)`` after each child is collected.
        history: how many ``Reaped`` records to keep in ``history``.
    """

    def __init__(
        self,
        *,
        orphans: bool = True,
        subreaper: bool = True,
        grace: float = 0.5,
        interval: float = 1.0,
        sigchld: bool | Literal["auto"] = "auto",
        thread: bool = True,
        on_reap: Callable[[Reaped], None] | None = None,
        history: int = 1000,
    ) -> None:
        """Configure; nothing happens until ``start()``."""
        self.orphans = orphans
        self.subreaper = subreaper
        self.grace = grace
        self.interval = interval
        self.on_reap = on_reap
        self.history: collections.deque[Reaped] = collections.deque(maxlen=history)
        self.sigchld_installed = False
        self._sigchld_mode = sigchld
        self._use_thread = thread
        self._lock = threading.Lock()
        self._managed: dict[int, _Managed] = {}
        self._claimed: set[int] = set()
        self._zombie_since: dict[tuple[int, int], float] = {}
        self._pending = False
        self._running = False
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r = self._wake_w = -1
        self._previous_handler: Callable[[int, FrameType | None], object] | int | None = None
        self._set_subreaper = False

    # -- lifecycle -------------------------------------------------------

    def start(self) -> Reaper:
        """Start reaping; returns self.

        Raises:
            NotSupported: *orphans* needs ``/proc/self/task/*/children``
                (``CONFIG_PROC_CHILDREN``) and, with *subreaper*, Linux 3.4.
            UndertakerError: ``sigchld=True`` outside the main thread, or
                SIGCHLD is ``SIG_IGN`` (the kernel then reaps every child
                itself and no status can be collected).
            RuntimeError: already started.
            ValueError: ``orphans=True`` with ``thread=False`` (see *thread*).
        """
        if self._running:
            raise RuntimeError("this Reaper is already running")
        if self.orphans and not self._use_thread:
            raise ValueError(
                "Reaper(orphans=True) needs thread=True: an orphan is reaped only after "
                "`grace` seconds, and without the thread nothing wakes us then; use "
                "orphans=False and manage() for a threadless reaper"
            )
        if self.orphans and not _ownership.can_list_children():
            raise NotSupported("orphan reaping", "the kernel lacks CONFIG_PROC_CHILDREN")
        self._pid = os.getpid()
        if self.orphans and self.subreaper and not is_subreaper():
            become_subreaper()
            self._set_subreaper = True
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping.clear()
        self._running = True
        try:
            self._install_handler()
        except BaseException:
            self.stop()
            raise
        if self._use_thread:
            self._thread = threading.Thread(
                target=self._loop, name="undertaker-reaper", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: one last pass, restore SIGCHLD and the subreaper flag, close our pidfds.

        Children handed over that are still running stay unreaped; orphans
        adopted while we ran stay our children.
        """
        if not self._running:
            return
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None
        self.reap()
        with self._lock:
            # Under the lock, so a manage() from another thread either came
            # before (and its pidfd is closed here) or is refused.
            self._running = False
            for managed in self._managed.values():
                if managed.pidfd >= 0:
                    os.close(managed.pidfd)
            self._managed.clear()
            wake_r, wake_w = self._wake_r, self._wake_w
            self._wake_r = self._wake_w = -1
        self._restore_handler()
        if self._set_subreaper:
            become_subreaper(enable=False)
            self._set_subreaper = False
        os.close(wake_r)
        os.close(wake_w)

    def __enter__(self) -> Reaper:  # noqa: PYI034  (Self needs 3.11)
        """Start on entering the block."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on leaving the block."""
        self.stop()

    @property
    def running(self) -> bool:
        """Whether ``start()`` has been called and ``stop()`` not yet."""
        return self._running

    # -- ownership -------------------------------------------------------

    def manage(
        self, pid: int, *, pidfd: int | None = None, on_exit: ExitCallback | None = None
    ) -> None:
        """Hand child *pid* over: it is reaped as soon as it exits.

        Only hand over a child nobody else will wait for: its status goes to
        *on_exit* and ``history``, nowhere else. Without the thread, a child
        that has already exited is reaped before ``manage()`` returns (its
        SIGCHLD may have come and gone before we knew it was ours).

        Args:
            pid: a child of this process (running or a zombie).
            pidfd: a pidfd for it, which the reaper then owns and closes;
                without one we open our own when the kernel allows.
            on_exit: called as ``on_exit(pid, status)`` from the reaping thread;
                *status* is None when other code reaped the child first.

        Raises:
            NoSuchProcess: *pid* is not a child of this process (any more).
            ValueError: *pid* is already handed over and has not been reaped.
            RuntimeError: the reaper is not running (before ``start()`` or
                after ``stop()``).

        On every error the *pidfd* given is closed: it was handed over too.
        """
        done: list[tuple[Reaped | None, int, ExitCallback | None]] = []
        try:
            with self._lock:
                if not self._running:
                    raise RuntimeError("this Reaper is not running: start() it first")
                if pid in self._managed:
                    # The earlier hand-over may be stale: reaped by other code
                    # (its callback then gets None) and the PID reused.
                    done = self._reap_managed([pid])
                    if pid in self._managed:
                        raise ValueError(f"pid {pid} is already handed over to this Reaper")
                try:
                    os.waitid(os.P_PID, pid, _PEEK)
                except ChildProcessError:
                    raise NoSuchProcess(pid, "not a child of this process") from None
                if pidfd is None:
                    try:
                        pidfd = pidfd_open(pid) if can_use_pidfd() else -1
                    except NotSupported:
                        pidfd = -1
                self._managed[pid] = _Managed(pidfd, on_exit)
                pidfd = None  # ours now: closed when the child is reaped or at stop()
                self._claimed.discard(pid)
                if not self._use_thread:
                    # No thread will look at it: if it exited before we held it,
                    # its SIGCHLD has come and gone, so reap it now.
                    done += self._reap_managed([pid])
                self._wake()
        finally:
            if pidfd is not None and pidfd >= 0:
                os.close(pidfd)  # refused: the descriptor was handed over all the same
            self._report(done)
        if self._pending and not self._use_thread:
            self.reap()  # SIGCHLD arrived while we held the lock

    def claim(self, pid: int) -> None:
        """Promise that other code will wait for child *pid*: never reap it as an orphan."""
        with self._lock:
            self._claimed.add(pid)

    def release(self, pid: int) -> None:
        """Withdraw a ``claim()``."""
        with self._lock:
            self._claimed.discard(pid)

    # -- reaping ---------------------------------------------------------

    def reap(self) -> list[Reaped]:
        """Run one pass now, from any thread, and return what it collected."""
        done: list[tuple[Reaped | None, int, ExitCallback | None]] = []
        with self._lock:
            while True:
                self._pending = False
                done.extend(self._pass())
                if not self._pending:
                    break
        self._report(done)
        return [record for record, _, _ in done if record is not None]

    def _pass(self) -> list[tuple[Reaped | None, int, ExitCallback | None]]:
        """Collect what is ours; the lock is held. Returns (record, pid, callback)."""
        if os.getpid() != self._pid:
            return []  # a forked copy of the reaper: the children are not ours
        found = self._reap_managed(list(self._managed))
        if self.orphans:
            found.extend((record, record.pid, None) for record in self._reap_orphans())
        return found

    def _reap_managed(
        self, pids: list[int]
    ) -> list[tuple[Reaped | None, int, ExitCallback | None]]:
        """Reap those of the handed-over *pids* that have exited; the lock is held."""
        found: list[tuple[Reaped | None, int, ExitCallback | None]] = []
        for pid in pids:
            managed = self._managed.get(pid)
            if managed is None:
                continue
            try:
                if managed.pidfd >= 0:
                    result = os.waitid(os.P_PIDFD, managed.pidfd, _REAP)
                else:
                    result = os.waitid(os.P_PID, pid, _REAP)
            except ChildProcessError:
                record = None  # someone else reaped it: the status is lost
            else:
                if result is None:
                    continue  # still running
                record = Reaped(pid, WaitStatus.from_waitid(result), orphan=False)
            del self._managed[pid]
            if managed.pidfd >= 0:
                os.close(managed.pidfd)
            found.append((record, pid, managed.on_exit))
        return found

    def _reap_orphans(self) -> list[Reaped]:
        now = time.monotonic()
        adopter = _ownership.adopter_thread()
        seen: dict[tuple[int, int], float] = {}
        claims: _ownership.Claims | None = None
        reaped = []
        for pid, tid in _ownership.children_by_thread().items():
            # A child filed under another thread was forked by that thread:
            # the program's own, never an orphan.
            if tid != adopter or pid in self._managed or pid in self._claimed:
                continue
            try:
                if os.waitid(os.P_PID, pid, _PEEK) is None:
                    continue  # alive
                start = read_start_ticks(pid)
            except (ChildProcessError, NoSuchProcess):
                continue  # reaped by its owner since the listing
            key = (pid, start)
            seen[key] = first = self._zombie_since.get(key, now)
            if now - first < self.grace:
                continue
            if claims is None:
                claims = _ownership.collect_claims(self._own_fds())
            if claims.covers(pid):
                continue
            status = self._reap_exact(pid, start)
            if status is not None:
                seen.pop(key)
                reaped.append(Reaped(pid, status, orphan=True))
        self._zombie_since = seen
        return reaped

    def _reap_exact(self, pid: int, start: int) -> WaitStatus | None:
        """Reap zombie *pid* only if it is still the process that started at *start*."""
        try:
            fd = pidfd_open(pid) if can_use_pidfd() else -1
        except NoSuchProcess:
            return None
        except NotSupported:
            fd = -1
        try:
            # With the pidfd pinning the process, a matching start time proves
            # it is the same zombie we timed, not a new child with its PID.
            if read_start_ticks(pid) != start:
                return None
            # Without pidfds a tiny window for PID reuse remains.
            by_fd = fd >= 0
            result = os.waitid(os.P_PIDFD if by_fd else os.P_PID, fd if by_fd else pid, _REAP)
        except (ChildProcessError, NoSuchProcess):
            return None
        finally:
            if fd >= 0:
                os.close(fd)
        return None if result is None else WaitStatus.from_waitid(result)

    def _own_fds(self) -> set[int]:
        return {m.pidfd for m in self._managed.values() if m.pidfd >= 0}

    def _report(self, done: list[tuple[Reaped | None, int, ExitCallback | None]]) -> None:
        """Record and call back outside the lock; a failing callback must not stop us."""
        for record, pid, on_exit in done:
            if record is not None:
                self.history.append(record)
            try:
                if on_exit is not None:
                    on_exit(pid, None if record is None else record.status)
                if record is not None and self.on_reap is not None:
                    self.on_reap(record)
            except Exception:  # noqa: BLE001  (report and carry on reaping)
                sys.excepthook(*sys.exc_info())

    # -- waking up -------------------------------------------------------

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: a wake-up is already pending

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        registered: set[int] = set()
        while not self._stopping.is_set():
            with self._lock:
                fds = self._own_fds()
                soonest = min(self._zombie_since.values(), default=None)
            for fd in registered - fds:
                poller.unregister(fd)
            for fd in fds - registered:
                poller.register(fd, select.POLLIN)
            registered = fds
            timeout = self.interval
            if soonest is not None:
                timeout = min(timeout, max(soonest + self.grace - time.monotonic(), 0.0) + 0.01)
            poller.poll(int(timeout * 1000) + 1)
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass  # drained
            self.reap()

    def _install_handler(self) -> None:
        mode = self._sigchld_mode
        if mode is False:
            return
        in_main = threading.current_thread() is threading.main_thread()
        current = signal.getsignal(signal.SIGCHLD)
        if current == signal.SIG_IGN and mode is True:
            raise UndertakerError(
                "SIGCHLD is SIG_IGN: the kernel reaps every child itself and no status "
                "survives; restore SIG_DFL first"
            )
        if mode == "auto" and (not in_main or current not in (signal.SIG_DFL, None)):
            return  # never replace a handler silently: rely on pidfds and polling
        if not in_main:
            raise UndertakerError("sigchld=True needs the main thread (Python's rule for handlers)")
        self._previous_handler = current
        signal.signal(signal.SIGCHLD, self._on_sigchld)
        self.sigchld_installed = True

    def _restore_handler(self) -> None:
        if not self.sigchld_installed:
            return
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGCHLD) == self._on_sigchld:
                previous = self._previous_handler
                signal.signal(signal.SIGCHLD, previous if previous is not None else signal.SIG_DFL)
            self.sigchld_installed = False
        # Elsewhere we cannot restore it; the handler goes on chaining, and does nothing else.

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        if self._running and os.getpid() == self._pid:
            if self._use_thread:
                self._wake()
            elif self._lock.acquire(blocking=False):
                # Threadless: reap right here, in the main thread.
                try:
                    done = self._pass()
                finally:
                    self._lock.release()
                self._report(done)
            else:
                self._pending = True  # whoever holds the lock runs another pass
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)
