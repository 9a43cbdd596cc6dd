"""A cooperative reaper: reap adopted orphans and handed-over children, steal nothing.

The usual fix for zombies, a SIGCHLD handler looping on ``waitpid(-1)``,
takes exit statuses that ``subprocess``, ``multiprocessing`` and ``asyncio``
are about to ask for: they then see ECHILD and report 0. ``Reaper`` instead
enumerates its children per thread (``/proc/self/task/*/children``), peeks
at each with ``waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`` and reaps
only:

* children handed to it with ``manage()`` (reaped as soon as they exit), and
* adopted orphans (with ``orphans=True``): children that evidence shows were
  forked by another process (``_lineage``), unless other code of ours visibly
  waits for them (``_ownership``).

A child of ours with no such evidence is never reaped: it is left to the
code that will wait for it, and reported if it stays a zombie. The rules,
and where they fall short, are in ``docs/library.md``.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import select
import signal
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Literal, NamedTuple

from undertaker import _orphans, _ownership, _sigchld
from undertaker._control_errors import NotSupported
from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.pidfd import can_use_pidfd, pidfd_open
from undertaker.prctl import become_subreaper, is_subreaper
from undertaker.proc import read_start_ticks
from undertaker.wait import WaitStatus

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType

    from undertaker.proc._connector import ProcEvents

    ExitCallback = Callable[[int, "WaitStatus | None"], None]
    Done = list[tuple["Reaped | None", int, "ExitCallback | None"]]


_log = logging.getLogger("undertaker.reaper")
_PEEK = os.WEXITED | os.WNOHANG | os.WNOWAIT
_REAP = os.WEXITED | os.WNOHANG
_MAX_SLEEP = 2_000_000.0  # seconds: poll() takes at most INT_MAX milliseconds


class Reaped(NamedTuple):
    """One child the reaper collected."""

    pid: int
    status: WaitStatus
    orphan: bool  # True: an adopted orphan; False: handed over with manage()
    evidence: str = ""  # for an orphan: why we know it was adopted


class _Managed(NamedTuple):
    pidfd: int  # -1 without pidfd support
    on_exit: ExitCallback | None


def _positive(name: str, value: float, *, zero: bool = False) -> float:
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {'>= 0' if zero else '> 0'}, not {value!r}")
    return float(value)


# Running reapers, so that a fork() can disable their copies in the child.
_running: weakref.WeakSet[Reaper] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for reaper in list(_running):
        reaper._forked()  # noqa: SLF001
    _running.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Reaper:
    """Reap adopted orphans and the children you hand over, without stealing statuses.

    Use it as a context manager, or call ``start()`` and ``stop()``; both work
    from any thread. By default it runs a small daemon thread that wakes on
    SIGCHLD (when it may install a handler), on the pidfds of managed children,
    and every *interval* seconds.

    >>> with Reaper() as reaper:  # doctest: +SKIP
    ...     reaper.manage(os.fork() or os._exit(0))

    Ownership: see ``docs/library.md``. In short, a child of this process is
    reaped only if it was handed over with ``manage()``, or if evidence shows
    another process forked it (an adopted orphan). A zombie child with no
    such evidence is left for the code that will wait for it, and listed in
    ``unproven``.

    Args:
        orphans: reap adopted orphans, not only children handed over.
        subreaper: with *orphans*, make this process a child subreaper while
            running, so orphaned descendants come to us rather than to init.
        grace: seconds a zombie child without evidence of adoption waits
            before it is reported in ``unproven`` (and, with
            ``reap_unproven=True``, reaped).
        interval: seconds between passes when nothing wakes us.
        sigchld: ``"auto"`` installs a wake-up handler only from the main thread
            and only if SIGCHLD has its default disposition (never replacing a
            handler, Python's or C's); True installs it anyway, chaining to an
            existing Python handler; False never touches SIGCHLD.
        thread: run the background thread. Without it, reaping happens in the
            SIGCHLD handler (main thread), in ``manage()`` and in ``reap()``;
            it then needs ``orphans=False``.
        events: use the kernel's fork events (the proc connector) as evidence
            of adoption: ``"auto"`` when allowed (from the initial PID
            namespace), True to require them, False never.
        reap_unproven: opt in to the old rule: also reap a zombie child without
            evidence once it has been a zombie for *grace* seconds and no code of
            ours visibly waits for it. Only for programs that never wait for a
            child late (a late ``Popen.wait()`` would then read 0).
        on_reap: called as ``on_reap(reaped)`` after each child is collected.
        on_unproven: called as ``on_unproven(pid)`` once for each zombie child
            left alone for lack of evidence, when its *grace* ends.
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
        events: bool | Literal["auto"] = "auto",
        reap_unproven: bool = False,
        on_reap: Callable[[Reaped], None] | None = None,
        on_unproven: Callable[[int], None] | None = None,
        history: int = 1000,
    ) -> None:
        """Configure; nothing happens until ``start()``.

        Raises:
            ValueError: *grace* or *interval* is not a finite number of seconds.
        """
        self.orphans = orphans
        self.subreaper = subreaper
        self.grace = _positive("grace", grace, zero=True)
        self.interval = min(_positive("interval", interval), _MAX_SLEEP)
        self.reap_unproven = reap_unproven
        self.on_reap = on_reap
        self.on_unproven = on_unproven
        self.history: collections.deque[Reaped] = collections.deque(maxlen=history)
        self.errors: collections.deque[BaseException] = collections.deque(maxlen=100)
        self.sigchld_installed = False
        self._sigchld_mode = sigchld
        self._events_mode = events
        self._use_thread = thread
        # Reentrant, so that code interrupted by a signal handler can tell it
        # holds the lock (``_is_owned``) instead of deadlocking on it.
        self._lock = threading.RLock()
        self._managed: dict[int, _Managed] = {}
        self._orphans: _orphans.OrphanCollector | None = None  # with orphans, once started
        self._pending = False
        self._stop_deferred = False
        self._in_stop = False
        self._warned_handler = False
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
                (``CONFIG_PROC_CHILDREN``) and, with *subreaper*, Linux 3.4;
                ``events=True`` needs the proc connector.
            AccessDenied: ``events=True`` without CAP_NET_ADMIN.
            UndertakerError: ``sigchld=True`` outside the main thread, or with
                SIGCHLD ignored (the kernel then reaps every child itself and
                no status can be collected) or caught by a handler from C.
            RuntimeError: already started.
            ValueError: ``orphans=True`` with ``thread=False`` (see *thread*).
        """
        if self._running:
            raise RuntimeError("this Reaper is already running")
        if self.orphans and not self._use_thread:
            raise ValueError(
                "Reaper(orphans=True) needs thread=True: orphans are found by passes "
                "that nothing would wake without the thread; use orphans=False and "
                "manage() for a threadless reaper"
            )
        if self.orphans and not _ownership.can_list_children():
            raise NotSupported("orphan reaping", "the kernel lacks CONFIG_PROC_CHILDREN")
        self._pid = os.getpid()
        if self.orphans:
            self._orphans = _orphans.OrphanCollector(
                self._subscribe(), self.grace, self.reap_unproven, self.on_unproven
            )
            if self.subreaper and not is_subreaper():
                become_subreaper()
                self._set_subreaper = True
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping.clear()
        self._running = True
        _running.add(self)
        try:
            self._install_handler()
            if self._orphans is not None:
                self.reap()  # classify the children we already have, before any fork of ours
        except BaseException:
            self.stop()
            raise
        if self._use_thread:
            self._thread = threading.Thread(
                target=self._loop, name="undertaker-reaper", daemon=True
            )
            self._thread.start()
        return self

    def _subscribe(self) -> ProcEvents | None:
        if self._events_mode is False:
            return None
        from undertaker.proc._connector import ProcEvents  # noqa: PLC0415  (socket: on demand)

        try:
            return ProcEvents()
        except (NotSupported, AccessDenied):
            if self._events_mode is True:
                raise
            return None

    @property
    def events(self) -> bool:
        """Whether the kernel's fork events serve as evidence (see *events*)."""
        return self._orphans is not None and self._orphans.events is not None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: one last pass, restore SIGCHLD and the subreaper flag, close our pidfds.

        Adopted orphans still running are handed to a background janitor that
        reaps them when they exit (they are ours to reap, and nobody else will).
        Children handed over with ``manage()`` that still run stay unreaped.

        Called from a signal handler that interrupted this Reaper's own code in
        the same thread, the stop completes when that code returns.
        """
        if not self._running or self._in_stop:
            return  # stopped, or a stop under way (a handler interrupting it, another thread)
        if self._lock._is_owned():  # type: ignore[attr-defined]  # noqa: SLF001
            self._stop_deferred = True  # we interrupted our own locked code: finish there
            self._stopping.set()
            self._wake()
            return
        self._in_stop = True
        try:
            self._stop(timeout)
        finally:
            self._in_stop = False

    def _stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(min(_positive("timeout", timeout, zero=True), threading.TIMEOUT_MAX))
        self._thread = None
        self.reap()
        with self._lock:
            # Under the lock, so a manage() from another thread either came
            # before (and its pidfd is closed here) or is refused.
            if not self.running:
                return  # a deferred stop ran meanwhile
            self._running = False
            _running.discard(self)
            for managed in self._managed.values():
                if managed.pidfd >= 0:
                    os.close(managed.pidfd)
            self._managed.clear()
            wake_r, wake_w = self._wake_r, self._wake_w
            self._wake_r = self._wake_w = -1
            adopted = []
            if self._orphans is not None:
                adopted = self._orphans.adopted_alive()
                self._orphans.close()
        self._restore_handler()
        if self._set_subreaper:
            become_subreaper(enable=False)
            self._set_subreaper = False
        os.close(wake_r)
        os.close(wake_w)
        self._hand_on(adopted)

    @staticmethod
    def _hand_on(pids: list[int]) -> None:
        """Give running adopted orphans to the process-wide janitor (children.py)."""
        if not pids:
            return
        from undertaker.children import _janitor_reaper  # noqa: PLC0415

        janitor = _janitor_reaper()
        for pid in pids:
            try:
                janitor.manage(pid)
            except (NoSuchProcess, ValueError):
                continue  # reaped meanwhile, or handed over already

    def _forked(self) -> None:
        """In the child of fork(): this copy reaps nothing and holds nothing."""
        self._running = False
        self._lock = threading.RLock()  # another thread may have held it at the fork
        self._thread = None
        for managed in self._managed.values():
            if managed.pidfd >= 0:
                os.close(managed.pidfd)
        self._managed.clear()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._orphans is not None:
            self._orphans.forget_in_child()
        if self.sigchld_installed and threading.current_thread() is threading.main_thread():
            self._restore_handler()
        self.sigchld_installed = False

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
        """Whether ``start()`` has been called and ``stop()`` not yet (in this process)."""
        return self._running and self._pid == os.getpid()

    @property
    def unproven(self) -> list[int]:
        """Zombie children left alone past *grace* because nothing proves them adopted.

        They are the program's to wait for; a list that keeps growing means
        zombies that nobody reaps (see ``reap_unproven``).
        """
        return [] if self._orphans is None else list(self._orphans.unproven)

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
            on_exit: called as ``on_exit(pid, status)`` from the reaping thread
                (threadless: from the SIGCHLD handler, interrupting the main
                thread: keep it short and take no lock); *status* is None
                when other code reaped the child first.

        Raises:
            NoSuchProcess: *pid* is not a child of this process (any more).
            ValueError: *pid* is already handed over and has not been reaped.
            RuntimeError: the reaper is not running (before ``start()`` or
                after ``stop()``).

        On every error the *pidfd* given is closed: it was handed over too.
        """
        done: Done = []
        try:
            with self._lock:
                if not self.running:
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
                if not self._use_thread:
                    # No thread will look at it: if it exited before we held it,
                    # its SIGCHLD has come and gone, so reap it now.
                    done += self._reap_managed([pid])
                self._wake()
        finally:
            if pidfd is not None and pidfd >= 0:
                os.close(pidfd)  # refused: the descriptor was handed over all the same
            self._report(done)
        self._after_locked()

    def claim(self, pid: int) -> None:
        """Promise that other code will wait for child *pid*: never reap it as an orphan.

        The claim names the process, not the PID: it ends when that process is
        reaped, so a later process reusing the PID is not covered.

        Raises:
            NoSuchProcess: *pid* does not exist.
        """
        key = (pid, read_start_ticks(pid))
        with self._lock:
            if self._orphans is not None:
                self._orphans.claimed.add(key)
        self._after_locked()

    def release(self, pid: int) -> None:
        """Withdraw a ``claim()``."""
        with self._lock:
            if self._orphans is not None:
                self._orphans.claimed = {k for k in self._orphans.claimed if k[0] != pid}
        self._after_locked()

    # -- reaping ---------------------------------------------------------

    def reap(self) -> list[Reaped]:
        """Run one pass now, from any thread, and return what it collected."""
        done: Done = []
        with self._lock:
            while True:
                self._pending = False
                done.extend(self._pass())
                if not self._pending:
                    break
        self._report(done)
        self._after_locked()
        return [record for record, _, _ in done if record is not None]

    def _after_locked(self) -> None:
        """Outside the lock: finish what a signal handler could not do inside it."""
        if self._lock._is_owned():  # type: ignore[attr-defined]  # noqa: SLF001
            return  # still inside an outer locked call of ours: it finishes there
        if self._stop_deferred:
            self._stop_deferred = False
            self.stop()
        elif self._pending and not self._use_thread and self.running:
            self.reap()  # SIGCHLD arrived while we held the lock
        elif not self._use_thread and self.sigchld_installed and not self._warned_handler:
            self._check_handler()

    def _check_handler(self) -> None:
        """Threadless: warn once if other code replaced our SIGCHLD handler."""
        if signal.getsignal(signal.SIGCHLD) != self._on_sigchld:
            import warnings  # noqa: PLC0415  (only on this rare path)

            self._warned_handler = True
            warnings.warn(
                "another SIGCHLD handler replaced the Reaper's: without its thread it now "
                "reaps only in manage() and reap()",
                RuntimeWarning,
                stacklevel=4,
            )

    def _pass(self) -> Done:
        """Collect what is ours; the lock is held. Returns (record, pid, callback)."""
        if not self.running:
            return []  # stopped, or a forked copy of the reaper: the children are not ours
        found = self._reap_managed(list(self._managed))
        if self._orphans is not None:
            collected = self._orphans.collect(self._managed, self._own_fds())
            found.extend(
                (Reaped(pid, status, orphan=True, evidence=why), pid, None)
                for pid, status, why in collected
            )
        return found

    def _reap_managed(self, pids: list[int]) -> Done:
        """Reap those of the handed-over *pids* that have exited; the lock is held."""
        found: Done = []
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

    def _own_fds(self) -> set[int]:
        return {m.pidfd for m in self._managed.values() if m.pidfd >= 0}

    def _report(self, done: Done) -> None:
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
            except (BlockingIOError, OSError):
                pass  # the pipe is full (a wake-up is pending) or closed by stop()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._sleep()
                self.reap()
            except Exception as err:  # noqa: BLE001  (EMFILE and the like pass; we must not die)
                self._failed(err)

    def _sleep(self) -> None:
        """Wait for SIGCHLD, a managed child's pidfd or the next due pass."""
        poller = select.poll()  # a few descriptors: cheaper to rebuild than to keep in step
        poller.register(self._wake_r, select.POLLIN)
        with self._lock:
            for fd in self._own_fds():
                poller.register(fd, select.POLLIN)
            since = {} if self._orphans is None else self._orphans.zombie_since
            soonest = min(since.values(), default=None)
        timeout = self.interval
        if soonest is not None:
            timeout = min(timeout, max(soonest + self.grace - time.monotonic(), 0.0) + 0.01)
        poller.poll(int(timeout * 1000) + 1)
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass  # drained

    def _failed(self, err: BaseException) -> None:
        """Keep the error for the program, log it, and wait a little before the next pass.

        Nothing here may need a new descriptor: the error may be EMFILE.
        """
        self.errors.append(err)
        try:
            _log.warning("reaper pass failed, retrying in %gs: %s", self.interval, err)
        except Exception:  # noqa: BLE001, S110  (logging must not end the thread)
            pass
        self._stopping.wait(self.interval)

    def _install_handler(self) -> None:
        previous = _sigchld.install(self._sigchld_mode, self._on_sigchld)
        if previous is not False:
            self._previous_handler = previous
            self.sigchld_installed = True

    def _restore_handler(self) -> None:
        if self.sigchld_installed and _sigchld.restore(self._on_sigchld, self._previous_handler):
            self.sigchld_installed = False

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        if self.running:
            if self._use_thread:
                self._wake()
            elif self._lock._is_owned():  # type: ignore[attr-defined]  # noqa: SLF001
                self._pending = True  # we interrupted our own pass: it runs another
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
