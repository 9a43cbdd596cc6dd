"""Children handed over to a ``Reaper`` with ``manage()``: reaped as soon as they exit."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NamedTuple

from undertaker._control_errors import NotSupported
from undertaker._errors import NoSuchProcess
from undertaker.pidfd import can_use_pidfd, pidfd_open
from undertaker.wait import WaitStatus

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable, Iterable

    ExitCallback = Callable[[int, "WaitStatus | None"], None]
    Done = list[tuple["Reaped | None", int, "ExitCallback | None"]]

_PEEK = os.WEXITED | os.WNOHANG | os.WNOWAIT
_REAP = os.WEXITED | os.WNOHANG


class Reaped(NamedTuple):
    """One child the reaper collected."""

    pid: int
    status: WaitStatus
    orphan: bool  # True: an adopted orphan; False: handed over with manage()
    evidence: str = ""  # for an orphan: why we know it was adopted


class _Managed(NamedTuple):
    pidfd: int  # -1 without pidfd support
    on_exit: ExitCallback | None


class HandOvers:
    """The children a Reaper owns outright; used under its lock."""

    def __init__(self) -> None:
        """Own nothing yet."""
        self._children: dict[int, _Managed] = {}

    def __contains__(self, pid: object) -> bool:
        """Whether *pid* is handed over and not yet reaped."""
        return pid in self._children

    def add(self, pid: int, pidfd: int | None, on_exit: ExitCallback | None) -> None:
        """Take child *pid* (and *pidfd*, if given; else open our own when possible).

        Raises:
            NoSuchProcess: *pid* is not a child of this process; *pidfd* is
                then still the caller's to close.
        """
        try:
            os.waitid(os.P_PID, pid, _PEEK)
        except ChildProcessError:
            raise NoSuchProcess(pid, "not a child of this process") from None
        if pidfd is None:
            try:
                pidfd = pidfd_open(pid) if can_use_pidfd() else -1
            except NotSupported:
                pidfd = -1
        self._children[pid] = _Managed(pidfd, on_exit)

    def reap(self, pids: Iterable[int] | None = None) -> Done:
        """Reap those of *pids* (default: all) that have exited: (record, pid, callback)."""
        found: Done = []
        for pid in list(self._children) if pids is None else pids:
            managed = self._children.get(pid)
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
            del self._children[pid]
            if managed.pidfd >= 0:
                os.close(managed.pidfd)
            found.append((record, pid, managed.on_exit))
        return found

    def fds(self) -> set[int]:
        """Our pidfds: to sleep on, and to tell apart from other code's."""
        return {m.pidfd for m in self._children.values() if m.pidfd >= 0}

    def close(self) -> None:
        """Let go of every child still running: close our pidfds."""
        for managed in self._children.values():
            if managed.pidfd >= 0:
                os.close(managed.pidfd)
        self._children.clear()


def report(done: Done, history: deque[Reaped], on_reap: Callable[[Reaped], None] | None) -> None:
    """Record what a pass collected and call back; a failing callback must not stop us.

    An exception is printed and the next callback runs; a ``SystemExit`` or
    the like is raised again once every record is in ``history``.
    """
    fatal: BaseException | None = None
    for record, pid, on_exit in done:
        if record is not None:
            history.append(record)
        try:
            if on_exit is not None:
                on_exit(pid, None if record is None else record.status)
            if record is not None and on_reap is not None:
                on_reap(record)
        except Exception:  # noqa: BLE001  (report and carry on reaping)
            sys.excepthook(*sys.exc_info())
        except BaseException as err:  # noqa: BLE001  (after the others are recorded)
            fatal = fatal or err
    if fatal is not None:
        raise fatal
