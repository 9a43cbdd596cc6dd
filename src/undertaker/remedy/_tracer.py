"""The tracer: a helper process forked to stop the parent and run its ``wait4`` calls.

:mod:`undertaker.remedy.ptrace` plans a reap and checks its targets; this
module runs it. The helper ignores ^C and group kills (it must never be
ended between setting up a call and restoring the parent's registers),
reports each stop as a JSON line on a pipe, and ends its stop early when the
caller closes the stop pipe (a ^C in the caller). Killing the helper detaches
the kernel's trace, so a helper that stops reporting is killed at once.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import select
import signal
import threading
import time
import warnings

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.proc._read import read_status
from undertaker.remedy._checks import ptrace_requirement
from undertaker.remedy._errors import NotPermitted, ParentGone, ParentRefused
from undertaker.remedy._ptrace import Tracee, find_site, site_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from undertaker.remedy._target import Zombie
    from undertaker.remedy.ptrace import PtracePlan

WNOHANG = 1
_PAUSE = 0.001  # seconds the parent runs between two attaches
# A batch aims at this share of max_stop: the parent itself runs each injected
# call, and it may wait for a CPU while stopped; the rest of max_stop is the
# margin for that wait. At 0.9, 5-9% of stops ran over 5 ms on a quiet machine
# here; at 0.6, 0-5% (load 1-3); at 0.4, 0-1.4%, at 5,300/s (bench/README.md).
_SLACK = 0.4
_PROCESSOR = 36  # stat field 39, the CPU a task last ran on, in the tail after ") "


def _run_helper(
    plan: PtracePlan, zombies: list[Zombie], max_stop: float, timeout: float
) -> tuple[dict[int, int], list[float], int, Exception | None, bool]:
    """Fork the tracer, read its reports, kill it if it hangs; the last item: interrupted."""
    # A ^C between the fork and the handler below would leave the helper
    # unwaited and its reports unread: it waits until we can handle it.
    held_int = _HeldInterrupt()
    try:
        read_end, write_end = os.pipe()
        # Closing stop_w asks the helper to end its stop and quit; it reports the
        # reaps of that stop first, on the report pipe we keep reading.
        stop_r, stop_w = os.pipe()
        # os.fork warns in a threaded process (3.12+); the child only calls
        # ptrace, os and json, all of which were imported before the fork.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the helper: whatever happens, it never returns into the caller
            try:
                os.close(read_end)
                os.close(stop_w)
                _helper(plan, zombies, max_stop, write_end, stop_r)
            finally:
                os._exit(1)
        os.close(write_end)
        os.close(stop_r)
        # Held by a pidfd, not its PID: a caller that ignores SIGCHLD has its
        # children reaped by the kernel, after which the PID may name another.
        try:
            helper = os.pidfd_open(pid)
        except ProcessLookupError:
            helper = -1  # ended and reaped already: nothing left to wait for
    except BaseException:
        held_int.deliver()
        raise
    answers: dict[int, int] = {}
    stops: list[float] = []
    held = 0
    error: Exception | None = None
    stuck = interrupted = False
    data = bytearray()
    try:
        try:
            held_int.deliver()  # a ^C held since the fork is raised here
            stuck = not _read_reports(read_end, data, timeout)
        except KeyboardInterrupt:
            # ^C: the helper ends the stop it is in (restores, detaches) and
            # reports it; killed between a call frame and the restore, it
            # would leave the parent running on the injected registers.
            interrupted = True
            os.close(stop_w)
            stop_w = -1
            stuck = not _read_reports(read_end, data, timeout)
    finally:
        # Only a helper that stopped reporting is killed at once: it is stuck
        # waiting for a parent that never stopped, before any register was touched.
        if stop_w >= 0:
            os.close(stop_w)
        os.close(read_end)
        if not _reap_helper(helper, 0.05 if stuck else timeout):
            error = ParentRefused(
                plan.parent.pid, f"the parent did not stop within {timeout} s (state D?)"
            )
    for line in data.decode(errors="replace").split("\n"):
        try:
            report = json.loads(line)
        except ValueError:
            continue  # empty, or cut by a ^C between a read and its append
        if "error" in report:
            error = _as_error(plan, report)
            continue
        if "done" in report:
            continue
        answers.update({int(k): v for k, v in report["answers"].items()})
        stops.append(report["stop"])
        held += report["held"]
    return answers, stops, held, error, interrupted


class _HeldInterrupt:
    """Note a SIGINT instead of acting on it, until :meth:`deliver` (main thread only).

    Blocking the signal would not do: another thread may take it, and Python
    then runs the main thread's handler all the same. Only the main thread
    gets KeyboardInterrupt, so elsewhere nothing needs holding.
    """

    def __init__(self) -> None:
        """Install the noting handler if this is the main thread and Python owns SIGINT."""
        self.noted = False
        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            current = signal.getsignal(signal.SIGINT)
            if current is not None:  # None: a handler set in C, left alone
                self.previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, _signum: int, _frame: object) -> None:
        self.noted = True

    def deliver(self) -> None:
        """Put the handler back and act on a SIGINT noted meanwhile, as it would have."""
        previous, self.previous = self.previous, None
        if previous is None:
            return
        signal.signal(signal.SIGINT, previous)
        if not self.noted:
            return
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


def _helper(plan: PtracePlan, zombies: list[Zombie], max_stop: float, out: int, stop: int) -> None:
    """Run the batches in the forked helper, report, and exit."""
    # A terminal's ^C or a group kill must not end it between setting the
    # injection frame and restoring the parent's registers; the caller still
    # can (SIGKILL) when it stops reporting.
    # SIGPIPE too: a caller that went away is seen as EPIPE after the detach.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    # A full collection walks every object inherited from the caller (a CLI
    # that scanned /proc holds many): milliseconds the parent would wait for.
    gc.disable()
    code = 0
    try:
        report = _trace(plan, zombies, max_stop, out, stop)
    except BaseException as err:  # noqa: BLE001  (reported to the caller, then exit)
        report = {
            "error": type(err).__name__,
            "errno": getattr(err, "errno", None),
            "message": str(err),
        }
        code = 1
    try:
        os.write(out, (json.dumps(report) + "\n").encode())
    finally:
        os._exit(code)


def _read_reports(fd: int, data: bytearray, timeout: float) -> bool:
    """Append reports to *data* until EOF (True) or *timeout* without progress (False).

    *data* keeps what was read when a ^C interrupts. poll, not select: with
    a pidfd held per zombie, the pipe's number is past select's 1,023.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if not poller.poll(timeout * 1000):
            return False
        chunk = os.read(fd, 65536)
        if not chunk:
            return True
        data += chunk


def _caller_gone(stop: int) -> bool:
    """Whether the caller closed its end of the stop pipe (interrupted, or dead)."""
    poller = select.poll()
    poller.register(stop, 0)  # POLLHUP, reported always: the writing end is closed
    return bool(poller.poll(0))


def _reap_helper(pidfd: int, timeout: float) -> bool:
    """Wait for the helper to end and reap it, through its pidfd; kill it when stuck.

    Returns False when it had to be killed. Where the caller ignores SIGCHLD
    the kernel reaps it, and the wait finds nothing (ECHILD).
    """
    if pidfd < 0:
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)  # readable once it has exited
        ended = bool(poller.poll(timeout * 1000))
        if not ended:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # its exit ends the trace
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    finally:
        os.close(pidfd)
    return ended


def _as_error(plan: PtracePlan, report: dict[str, object]) -> Exception:
    pid = plan.parent.pid
    if report["error"] == "TraceeGone":
        return ParentGone(pid, "the parent ended while attached")
    if report["error"] == "ParentGone":
        return ParentGone(pid, str(report["message"]).rsplit(" (pid=", 1)[0])
    if report["errno"] == errno.EPERM:
        try:  # a debugger may have attached since the check: that is EPERM too
            tracer = read_status(pid).tracer_pid
        except (NoSuchProcess, AccessDenied):
            tracer = 0
        if tracer:
            return ParentRefused(pid, f"the parent is already traced by PID {tracer}")
        return NotPermitted(pid, f"ptrace refused: {ptrace_requirement()}")
    if report["errno"] == errno.ESRCH:
        return ParentGone(pid, "the parent exited before it could be attached")
    return ParentRefused(pid, f"ptrace failed: {report['message']}")


def _follow(tid: int, allowed: set[int]) -> None:
    """Run the tracer on the CPU the stopped thread is on, if it is one of *allowed*.

    Each injected call wakes the parent, then the parent wakes us: on one CPU
    both wake-ups stay local (no cross-CPU interrupt, no idle CPU to rouse):
    15-40% more reaps per second here (bench/README.md). *allowed* is the
    caller's affinity: a CPU outside it (``taskset``, which root could
    override, or a cpuset, which it cannot) is left alone.
    """
    try:
        with open(f"/proc/{tid}/stat", "rb") as stat:
            cpu = int(stat.read().rsplit(b")", 1)[1].split()[_PROCESSOR])
        if cpu in allowed:
            os.sched_setaffinity(0, {cpu})
    except (OSError, ValueError, IndexError):
        pass


def _search(plan: PtracePlan, mem: int) -> tuple[int, int | None]:
    """Open the parent's memory anew (its map now) and find a system call instruction."""
    if mem >= 0:
        os.close(mem)  # an execve replaced the memory this named
    mem = os.open(f"/proc/{plan.thread}/mem", os.O_RDONLY | os.O_CLOEXEC)
    return mem, find_site(plan.thread, plan.arch, mem)


def _trace(
    plan: PtracePlan, zombies: list[Zombie], max_stop: float, out: int, stop: int
) -> dict[str, object]:
    """The helper's work: batches of injected wait4 calls, each within *max_stop*."""
    pending = list(zombies)
    fallback: int | None = None
    per_reap = 0.0
    mem = -1
    allowed = os.sched_getaffinity(0)  # the caller's, inherited through the fork
    try:  # before the first stop when we may (root): the search costs milliseconds
        mem, fallback = _search(plan, mem)
    except OSError:
        pass  # only the tracer may read it: after the attach
    try:
        while pending and not _caller_gone(stop):
            tracee = Tracee(plan.thread, plan.arch)
            start = time.monotonic()
            tracee.attach()
            answers: dict[int, int] = {}
            try:
                _follow(plan.thread, allowed)
                if not plan.parent.alive():  # the PID we attached may be a newcomer's
                    raise ParentGone(plan.parent.pid, "the parent was replaced before the attach")
                refusal = plan.arch.refuse(tracee.saved)
                if refusal:
                    raise ParentRefused(plan.parent.pid, f"the parent is {refusal}")
                site = site_for(tracee, mem, fallback) if mem >= 0 else None
                if site is None:  # not searched yet (not root), or the parent exec'd since
                    mem, fallback = _search(plan, mem)
                    site = site_for(tracee, mem, fallback)
                if site is None:
                    raise ParentRefused(plan.parent.pid, "no system call instruction found")
                while pending:
                    zombie = pending[0]
                    if answers and time.monotonic() - start + 2 * per_reap > _SLACK * max_stop:
                        break  # one more reap and the detach would overrun: the rest next stop
                    if _caller_gone(stop):
                        break  # ^C: restore the parent now
                    began = time.monotonic()
                    pending.pop(0)
                    if zombie.alive():  # not reaped, so its PID still names it
                        answers[zombie.pid] = tracee.syscall(
                            site, plan.arch.wait4, plan.pid_inside(zombie), 0, WNOHANG, 0
                        )
                    took = time.monotonic() - began
                    per_reap = took if not per_reap else 0.8 * per_reap + 0.2 * took
            finally:
                try:
                    tracee.detach()
                finally:  # what was reaped is reported even when something failed
                    lasted = time.monotonic() - start
                    batch = {"answers": answers, "stop": lasted, "held": tracee.held}
                    os.write(out, (json.dumps(batch) + "\n").encode())
            if pending:
                time.sleep(_PAUSE)
    finally:
        if mem >= 0:
            os.close(mem)
    return {"done": True}
