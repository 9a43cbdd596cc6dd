"""The supervise loop: wait for a signal, forward it, reap everything, drain at the end.

One iteration is exactly tini's: ``sigtimedwait`` on the blocked set (the
timeout bounds the cost of a merged or lost SIGCHLD), act on the signal,
then ``waitpid(-1, WNOHANG)`` until nothing is left to reap. Never one
reap per SIGCHLD: the kernel merges them.

The drain starts when the main child exits or a terminating signal is
forwarded, whichever comes first, and the grace period runs from then.
While the main child lives, only what it does not manage is signalled (the
subtrees of adopted orphans); once it is gone, everything left gets
SIGTERM. At the deadline, SIGKILL for all, then the init exits as soon as it
has no children left.
"""

from __future__ import annotations

import os
import time

from undertaker.init import _drain
from undertaker.init._report import Reporter, Stats
from undertaker.init._signals import (
    SIGCONT,
    SIGKILL,
    SIGSTOP,
    SIGTERM,
    SIGTSTP,
    SIGTTIN,
    SIGTTOU,
    TERMINATING,
    InheritedSignals,
    send,
)
from undertaker.wait import signal_name  # loaded with the package already

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from undertaker.init._options import Options
    from undertaker.init._spawn import Child

JOB_CONTROL = frozenset({SIGTSTP, SIGTTIN, SIGTTOU})
IDLE_WAIT = 1.0  # tini's fallback period
ORPHAN_POLL = 0.05  # --kill-orphans: adoption sends no signal, so we look
DRAIN_POLL = 0.25  # catch processes forked or adopted during the drain
KILL_POLL = 0.1  # after SIGKILL: look again for late forks
GIVE_UP_AFTER_KILL = 5.0  # D-state processes cannot die; do not hang forever


class Supervisor:
    """Runs the loop for one main child and returns its final wait status."""

    def __init__(
        self,
        child: Child,
        options: Options,
        signals: InheritedSignals,
        report: Reporter,
        *,
        proc: bool = True,
    ) -> None:
        """Prepare to supervise *child* as *options* ask.

        *proc*: /proc shows our PID namespace. If not, nothing is read from it:
        no comm or age in the log, no ``--kill-orphans``, and a drain that
        signals the whole namespace (as PID 1) or the child's process group.
        """
        self.child = child
        self.options = options
        self.proc = proc
        self.kill_orphans_on = options.kill_orphans and proc
        self.signals = signals
        self.report = report
        self.stats = Stats()
        self.me = os.getpid()
        self.status: int | None = None  # the main child's raw wait status, once reaped
        self.no_children = False
        self.child_stopped = False
        self.job_stop_forwarded = False
        self.term_due: float | None = None  # a delayed SIGTERM, on the monotonic clock
        self.drain_deadline: float | None = None
        self.killing_since: float | None = None
        self.blind_termed = False  # without /proc: the one SIGTERM of the drain was sent
        self.blind_group_gone = False  # without /proc: the main child's group emptied once
        self.signalled: set[tuple[int, int]] = set()  # (pid, starttime) the drain signalled
        self.refused: set[int] = set()  # PIDs (or -PGIDs) that refused a signal: EPERM

    def run(self) -> int:
        """Loop until the main child is reaped and no child is left; return its status."""
        while True:
            signum = self.signals.wait(self._timeout())
            if signum is not None:  # a kernel SIGCHLD comes back as None: just reap
                self.on_signal(signum)
            if self.term_due is not None and time.monotonic() >= self.term_due:
                self.term_due = None
                self.forward(SIGTERM, self.options.rewrite.get(SIGTERM, SIGTERM))
            self.reap()
            if self.status is not None and self.no_children:
                return self.status
            if self.drain_deadline is None and self.status is not None:
                self.start_drain()  # the main child is gone, others are not
            elif self.drain_deadline is not None:
                if self.drain_step():
                    return self.status if self.status is not None else SIGKILL
            elif self.kill_orphans_on:
                self.kill_orphans()

    def _timeout(self) -> float:
        now = time.monotonic()
        timeout = ORPHAN_POLL if self.kill_orphans_on else IDLE_WAIT
        if self.term_due is not None:
            timeout = min(timeout, self.term_due - now)
        if self.killing_since is not None:
            timeout = min(timeout, KILL_POLL)
        elif self.drain_deadline is not None:
            timeout = min(timeout, DRAIN_POLL, self.drain_deadline - now)
        return timeout

    # -- signals -------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        """A signal reached the init: delay, rewrite, forward, maybe start the drain."""
        if signum == SIGTERM and self.options.term_delay > 0 and self.status is None:
            if self.term_due is None:
                self.term_due = time.monotonic() + self.options.term_delay
            return
        if signum == SIGCONT:
            self.resume_child()
        self.forward(signum, self.options.rewrite.get(signum, signum))

    def forward(self, received: int, signum: int) -> None:
        """Send *signum* to the main child or its group, unless dropped or reaped."""
        if signum == 0 or self.status is not None:
            return  # dropped by --rewrite, or the PID may already be reused
        target = -self.child.pgid if self.options.process_group else self.child.pid
        if not send(target, signum, self.on_refused) and target not in self.refused:
            self.report.warning(f"child already gone while forwarding {signal_name(signum)}")
        if signum in JOB_CONTROL or received in JOB_CONTROL:
            self.job_stop_forwarded = True
        if received in TERMINATING and self.drain_deadline is None:
            self.start_drain()

    def on_refused(self, pid: int) -> None:
        """A signal was refused (EPERM): warn once per PID and carry on."""
        if pid in self.refused:
            return
        self.refused.add(pid)
        what = f"process group {-pid}" if pid < -1 else f"pid {pid}"
        if pid == -1:
            what = "some processes (kill -1)"
        self.report.warning(f"cannot signal {what}: different user")

    def on_child_stopped(self, stop_signal: int) -> None:
        """Job control: the main child stopped, so the init stops too, like a shell job.

        The terminal goes back to the init's group first, so the user's shell
        can take it; PID 1 cannot stop itself (the kernel ignores it).
        """
        if stop_signal not in JOB_CONTROL and not (
            stop_signal == SIGSTOP and self.job_stop_forwarded
        ):
            return
        self.child_stopped = True
        tty = self.child.tty
        if tty is not None:
            try:
                if os.tcgetpgrp(tty) == self.child.pgid:
                    os.tcsetpgrp(tty, os.getpgrp())
            except OSError:  # the terminal hung up meanwhile
                self.child.tty = None
        if self.me != 1:
            os.kill(self.me, SIGSTOP)

    def give_back_terminal(self) -> None:
        """Before the init exits: take the terminal back from the child's (dead) group.

        The child got the foreground at start; left there, the group is gone
        and the shell that ran us reads its terminal from the background
        (EIO or SIGTTIN). SIGTTOU is blocked, so ``tcsetpgrp`` works from here.
        Not if someone else holds the terminal now (``bg``, another job).
        """
        tty = self.child.tty
        if tty is None:
            return
        try:
            if os.tcgetpgrp(tty) == self.child.pgid:
                os.tcsetpgrp(tty, os.getpgrp())
        except OSError:  # the terminal hung up: nothing to give back
            pass

    def resume_child(self) -> None:
        """SIGCONT after a job-control stop: give back the terminal, wake the whole group."""
        if not self.child_stopped or self.status is not None:
            return
        self.child_stopped = self.job_stop_forwarded = False
        tty = self.child.tty
        if tty is not None:
            try:
                if os.tcgetpgrp(tty) == os.getpgrp():  # fg, not bg: hand it over
                    os.tcsetpgrp(tty, self.child.pgid)
            except OSError:
                self.child.tty = None
        send(-self.child.pgid, SIGCONT, self.on_refused)

    # -- reaping -------------------------------------------------------------

    def reap(self) -> None:
        """Reap every child that has exited; note the main child's stops."""
        self._check_main_stopped()
        flags = os.WNOHANG
        while True:
            ident = None
            try:
                if self.report.reaped_lines and self.proc:
                    peek = os.waitid(os.P_ALL, 0, os.WEXITED | flags | os.WNOWAIT)
                    if peek is None:
                        return
                    stat = _drain.read_stat(peek.si_pid)
                    ident = (stat[0], stat[4]) if stat else None
                    pid, status = os.waitpid(peek.si_pid, flags)
                else:
                    pid, status = os.waitpid(-1, flags)
            except ChildProcessError:
                self.no_children = True
                return
            if pid == 0:
                return
            main = pid == self.child.pid
            self.stats.reaped += 1
            if main:
                self.status = status
            else:
                self.stats.orphans += 1
            self.report.reaped(pid, status, ident, main)

    def _check_main_stopped(self) -> None:
        """Job control: has the main child stopped? Asked of it alone.

        Not with WUNTRACED in the bulk loop: then every ``waitpid(-1)`` also
        checks each live child for a stop, which in an orphan storm of
        thousands is measurable.
        """
        if self.status is not None:
            return
        try:
            info = os.waitid(os.P_PID, self.child.pid, os.WSTOPPED | os.WNOHANG)
        except ChildProcessError:
            return
        if info is not None and info.si_code == os.CLD_STOPPED:
            self.on_child_stopped(info.si_status)

    def kill_orphans(self) -> None:
        """``--kill-orphans``: SIGKILL every child of ours that is not the main child."""
        for pid in _drain.own_children(self.me):
            if pid != self.child.pid:
                # Our own unreaped child: its PID cannot be reused, kill is safe.
                send(pid, SIGKILL, self.on_refused)

    # -- draining ------------------------------------------------------------

    def start_drain(self) -> None:
        """Start the grace period and SIGTERM what nobody else will stop."""
        self.drain_deadline = time.monotonic() + self.options.grace
        self.drain_step()

    def drain_step(self) -> bool:
        """One drain pass; True when the init should stop waiting and exit."""
        now = time.monotonic()
        assert self.drain_deadline is not None  # noqa: S101  (only called while draining)
        if self.no_children and self.status is not None:
            return True
        if not self.proc:
            return self._blind_drain_step(now, self.drain_deadline)
        if now < self.drain_deadline:
            skip = self.child.pid if self.status is None else None
            left = _drain.descendants(self.me, skip)
            for pid, start in left.items():
                if (pid, start) not in self.signalled and _drain.signal_process(
                    pid, start, SIGTERM, self.on_refused
                ):
                    self.signalled.add((pid, start))
            self.stats.drained = len(self.signalled)
            return self.status is not None and self._only_refused_left(left)
        if self.killing_since is None:
            self.killing_since = now
            left = _drain.descendants(self.me)
            if left:
                self.report.warning(
                    f"{len(left)} process(es) still running {self.options.grace:g}s "
                    "after SIGTERM; sending SIGKILL"
                )
        elif now - self.killing_since > GIVE_UP_AFTER_KILL:
            self.report.warning("processes survive SIGKILL (uninterruptible sleep?); exiting")
            return True
        left = _drain.descendants(self.me)
        for pid, start in left.items():
            if _drain.signal_process(pid, start, SIGKILL, self.on_refused):
                self.signalled.add((pid, start))
        self.stats.drained = len({pid for pid, _ in self.signalled})
        return self._only_refused_left(left)

    def _only_refused_left(self, left: dict[int, int]) -> bool:
        """Whether every process left refused our signals (EPERM), so waiting cannot help.

        As PID 1, the init's exit has the kernel kill them; as a subreaper,
        they outlive it, as they would any init that may not signal them.
        """
        return bool(left) and left.keys() <= self.refused

    def _blind_group(self) -> list[int]:
        """The main child's process group while it has members, then nothing.

        A group ID cannot be reused while any process is in the group; once it
        is empty (the main child already reaped), a stranger may get that
        number as its PID and group, so we stop targeting it for good.
        """
        if self.blind_group_gone:
            return []
        try:
            os.kill(-self.child.pgid, 0)
        except ProcessLookupError:
            self.blind_group_gone = self.status is not None
            return []
        except PermissionError:
            pass  # members we may not signal: send() warns about them
        return [-self.child.pgid]

    def _blind_drain_step(self, now: float, deadline: float) -> bool:
        """The drain without /proc: no list of descendants, so signal wholesale.

        As PID 1, ``kill(-1)`` reaches every process of the namespace (all of
        them our descendants); elsewhere only the main child's process group
        can be found. SIGTERM is sent once, when the main child has exited (a
        second one would re-run slow handlers); SIGKILL at the deadline.
        """
        targets = [-1] if self.me == 1 else self._blind_group()
        if now < deadline:
            if self.status is not None and not self.blind_termed:
                self.blind_termed = True
                for target in targets:
                    send(target, SIGTERM, self.on_refused)
            return False
        if self.killing_since is None:
            self.killing_since = now
            self.report.warning(
                f"children still running {self.options.grace:g}s after SIGTERM; sending SIGKILL"
            )
        elif now - self.killing_since > GIVE_UP_AFTER_KILL:
            self.report.warning(
                "children survive SIGKILL (uninterruptible sleep, or out of reach without "
                "/proc); exiting"
            )
            return True
        if self.status is None:
            targets.append(self.child.pid)
        for target in targets:
            send(target, SIGKILL, self.on_refused)
        return False
