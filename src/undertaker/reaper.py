"""A cooperative reaper: reap adopted orphans and handed-over children, steal nothing.

The usual fix for zombies, a SIGCHLD handler looping on ``waitpid(-1)``,
takes the exit statuses that ``subprocess``, ``multiprocessing`` and
``asyncio`` wait for (they then report 0). ``Reaper`` reaps only children
handed to it with ``manage()`` and, with ``orphans=True``, children that
evidence shows another process forked (``_orphans``, ``_lineage``); any
other child is left to the code that will wait for it, however late.
``docs/library.md`` states the rules and where they fall short.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Literal

from undertaker import _orphans, _ownership, _sigchld
from undertaker._control_errors import NotSupported
from undertaker._errors import NoSuchProcess
from undertaker._handover import HandOvers, Reaped, report
from undertaker._identity import key_of
from undertaker._wakeup import MAX_SLEEP, Wakeup, seconds
from undertaker.prctl import become_subreaper, is_subreaper

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from undertaker.wait import WaitStatus

    ExitCallback = Callable[[int, "WaitStatus | None"], None]
    Done = list[tuple["Reaped | None", int, "ExitCallback | None"]]


__all__ = ["Reaped", "Reaper"]

_log = logging.getLogger("undertaker.reaper")


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
        self.grace = seconds("grace", grace, zero=True)
        self.interval = min(seconds("interval", interval), MAX_SLEEP)
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
        self._handed = HandOvers()
        self._orphans: _orphans.OrphanCollector | None = None  # with orphans, once started
        self._pending = False
        self._stop_deferred = False
        self._stop_lock = threading.RLock()  # reentrant: tells a handler it interrupted a stop
        self._warned_handler = False
        self._running = False
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._waker: Wakeup | None = None
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
        self._stopping.clear()
        self._running = True  # from here on, stop() undoes whatever was done
        _running.add(self)
        try:
            if self.orphans:
                events = _orphans.subscribe(self._events_mode)
                self._orphans = _orphans.OrphanCollector(
                    events, self.grace, self.reap_unproven, self.on_unproven
                )
                if self.subreaper and not is_subreaper():
                    become_subreaper()
                    self._set_subreaper = True
            self._waker = Wakeup()
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
        if not self._running or self._stop_lock._is_owned():  # type: ignore[attr-defined]  # noqa: SLF001
            return  # stopped, or a handler interrupting our own stop: it goes on
        if self._lock._is_owned():  # type: ignore[attr-defined]  # noqa: SLF001
            self._stop_deferred = True  # we interrupted our own locked code: finish there
            self._stopping.set()
            self._wake()
            return
        with self._stop_lock:  # a stop from another thread waits for the first to finish
            if self._running:
                self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(min(seconds("timeout", timeout, zero=True), threading.TIMEOUT_MAX))
        self._thread = None
        if self._set_subreaper:
            # First, so that no orphan arrives after the last pass has looked.
            become_subreaper(enable=False)
            self._set_subreaper = False
        adopted: list[tuple[int, int]] = []
        try:
            self.reap()
            if self._orphans is not None:
                with self._lock:
                    adopted = self._orphans.adopted_alive(self._handed.fds())
        except Exception as err:  # noqa: BLE001  (EMFILE...: a last pass must not keep us running)
            self.errors.append(err)
        with self._lock:
            # Under the lock, so a manage() from another thread either came
            # before (and its pidfd is closed here) or is refused.
            if not self.running:  # a deferred stop ran meanwhile
                for _, fd in adopted:
                    os.close(fd)
                return
            self._running = False
            _running.discard(self)
            if self._orphans is not None:
                self._orphans.close()
            self._handed.close()
            waker, self._waker = self._waker, None
        self._restore_handler()
        if waker is not None:
            waker.close()
        _orphans.hand_on(adopted)

    def _forked(self) -> None:
        """In the child of fork(): this copy reaps nothing and holds nothing."""
        self._running = False
        self._lock = threading.RLock()  # another thread may have held them at the fork
        self._stop_lock = threading.RLock()
        self._thread = None
        self._handed.close()
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        if self._orphans is not None:
            self._orphans.forget_in_child()
        if self.sigchld_installed and threading.current_thread() is threading.main_thread():
            self._restore_handler()
        self.sigchld_installed = False

    def __enter__(self) -> Reaper:  # noqa: PYI034  (Self needs 3.11)
        """Start on entering the block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving the block."""
        self.stop()

    @property
    def running(self) -> bool:
        """Whether ``start()`` has been called and ``stop()`` not yet (in this process)."""
        return self._running and self._pid == os.getpid()

    @property
    def events_lost(self) -> int:
        """How often the kernel dropped fork events (a full buffer); see ``unproven``."""
        return 0 if self._orphans is None else self._orphans.lineage.events_lost

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
                if pid in self._handed:
                    # The earlier hand-over may be stale: reaped by other code
                    # (its callback then gets None) and the PID reused.
                    done = self._handed.reap([pid])
                    if pid in self._handed:
                        raise ValueError(f"pid {pid} is already handed over to this Reaper")
                self._handed.add(pid, pidfd, on_exit)
                pidfd = None  # ours now: closed when the child is reaped or at stop()
                if not self._use_thread:
                    # No thread will look at it: if it exited before we held it,
                    # its SIGCHLD has come and gone, so reap it now.
                    done += self._handed.reap([pid])
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
        key = key_of(pid)
        if key is None:
            raise NoSuchProcess(pid)
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
            self._warned_handler = _sigchld.warn_if_replaced(self._on_sigchld)

    def _pass(self) -> Done:
        """Collect what is ours; the lock is held. Returns (record, pid, callback)."""
        if not self.running:
            return []  # stopped, or a forked copy of the reaper: the children are not ours
        found = self._handed.reap()
        if self._orphans is not None:
            collected = self._orphans.collect(self._handed, self._handed.fds())
            found.extend(
                (Reaped(pid, status, orphan=True, evidence=why), pid, None)
                for pid, status, why in collected
            )
        return found

    def _report(self, done: Done) -> None:
        """Record and call back, outside the lock."""
        report(done, self.history, self.on_reap)

    def _wake(self) -> None:
        waker = self._waker
        if waker is not None:
            waker.wake()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._sleep()
                self.reap()
            except BaseException as err:  # noqa: BLE001  (EMFILE, a callback's SystemExit: live on)
                self._failed(err)

    def _sleep(self) -> None:
        """Wait for SIGCHLD, a managed child's pidfd or the next due pass."""
        with self._lock:
            fds = self._handed.fds()
            since = {} if self._orphans is None else self._orphans.zombie_since
            soonest = min(since.values(), default=None)
        timeout = self.interval
        if soonest is not None:
            timeout = min(timeout, max(soonest + self.grace - time.monotonic(), 0.0) + 0.01)
        waker = self._waker
        if waker is not None:
            waker.sleep(fds, timeout)

    def _failed(self, err: BaseException) -> None:
        """Keep and log the error, then wait; nothing here may need a descriptor (EMFILE)."""
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
                # Threadless: reap right here, in the main thread, until no
                # SIGCHLD came during the pass (a nested handler only flags it).
                done: Done = []
                try:
                    while True:
                        self._pending = False
                        done.extend(self._pass())
                        if not self._pending:
                            break
                finally:
                    self._lock.release()
                self._report(done)
                self._after_locked()
            else:
                self._pending = True  # whoever holds the lock runs another pass
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)
