"""The supervise loop: wait for a signal, forward it, reap everything, drain at the end.

One iteration is exactly tini's: ``sigtimedwait`` on the blocked set (the
timeout bounds the cost of a merged or lost SIGCHLD), act on the signal,
then ``waitpid(-1, WNOHANG)`` until nothing is left to reap. Never one
reap per SIGCHLD: the kernel merges them.

The drain (``_shutdown``) starts when the main child exits or a terminating
signal is forwarded, whichever comes first; with ``--no-drain`` the init
exits with the main child, as tini does.

Job control follows dumb-init: a TSTP, TTIN or TTOU the init forwards also
stops the init, whether or not the child stops (it may catch the signal),
so the shell that started us sees its job stopped either way.
"""

from __future__ import annotations

import os
import time

from undertaker.init import _drain
from undertaker.init._report import Reporter, Stats
from undertaker.init._shutdown import Drain
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
from undertaker.wait import WaitStatus, signal_name  # loaded with the package already

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from undertaker.init._options import Options
    from undertaker.init._spawn import Child

JOB_CONTROL = frozenset({SIGTSTP, SIGTTIN, SIGTTOU})
IDLE_WAIT = 1.0  # tini's fallback period
ORPHAN_POLL = 0.05  # --kill-orphans: adoption sends no signal, so we look


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
        self.stopped = False  # stopped for job control, until a SIGCONT
        self.job_stop_forwarded = False
        self.term_due: float | None = None  # a delayed SIGTERM, on the monotonic clock
        self.refused: set[int] = set()  # PIDs (or -PGIDs) that refused a signal: EPERM
        self.drain = Drain(child, options, report, self.stats, self.on_refused, proc=proc)

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
            if self.status is not None and (self.no_children or not self.options.drain):
                return self.status  # --no-drain: leave the others, as tini does
            if self.drain.deadline is None and self.status is not None:
                self.drain.start("the command exited")
            if self.drain.deadline is not None:
                if self.drain.step(self.status is None, self.refused):
                    return self.status if self.status is not None else SIGKILL
            elif self.kill_orphans_on:
                self.kill_orphans()

    def _timeout(self) -> float:
        now = time.monotonic()
        timeout = ORPHAN_POLL if self.kill_orphans_on else IDLE_WAIT
        if self.term_due is not None:
            timeout = min(timeout, self.term_due - now)
        if self.drain.deadline is not None:
            timeout = min(timeout, self.drain.timeout(now))
        return timeout

    # -- signals -------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        """A signal reached the init: delay, rewrite, forward, maybe start the drain."""
        if signum == SIGTERM and self.options.term_delay > 0 and self.status is None:
            if self.term_due is None:
                self.term_due = time.monotonic() + self.options.term_delay
                self.report.info(f"holding SIGTERM for {self.options.term_delay:g}s (--term-delay)")
            return
        if signum == SIGCONT and self.resume_child() and SIGCONT not in self.options.rewrite:
            return  # the child's whole group has just had its SIGCONT: not a second one
        self.forward(signum, self.options.rewrite.get(signum, signum))

    def forward(self, received: int, signum: int) -> None:
        """Send *signum* to the main child or its group, unless dropped or reaped.

        A terminating signal starts the drain; a job-control one stops the
        init as well (dumb-init does the same), even if the child catches it.
        """
        if signum == 0 or self.status is not None:
            if self.report.verbose:  # dropped by --rewrite, or the PID may be reused
                why = "dropped (-r ...:0)" if signum == 0 else "not forwarded: child gone"
                self.report.info(f"{signal_name(received)} {why}")
            return
        target = -self.child.pgid if self.options.process_group else self.child.pid
        if self.report.verbose:
            rewritten = f" as {signal_name(signum)}" if signum != received else ""
            where = f"process group {-target}" if target < 0 else f"pid {target}"
            self.report.info(f"forwarding {signal_name(received)}{rewritten} to {where}")
        drain = received in TERMINATING and self.options.drain and self.drain.deadline is None
        if drain:  # before the send: the child may fork its shutdown helpers at once
            self.drain.before_telling_main()
        if not send(target, signum, self.on_refused) and target not in self.refused:
            self.report.warning(f"child already gone while forwarding {signal_name(signum)}")
        if signum in JOB_CONTROL or received in JOB_CONTROL:
            self.job_stop_forwarded = True
        if drain:
            self.drain.start(f"{signal_name(received)} forwarded")
        if received in JOB_CONTROL:
            self.stop(f"{signal_name(received)} forwarded")

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
        """Job control: the main child stopped (Ctrl-Z on its terminal): stop too.

        Not if the init has stopped already (it forwarded the signal that
        stopped the child) and the SIGCONT that woke it is still queued.
        """
        if self.stopped:
            return
        if stop_signal in JOB_CONTROL or (stop_signal == SIGSTOP and self.job_stop_forwarded):
            self.stop(f"the command stopped ({signal_name(stop_signal)})")

    def stop(self, why: str) -> None:
        """Stop the init like a shell job, until a SIGCONT (``fg``, ``bg``, ``kill -CONT``).

        The terminal goes back to the init's group first, so the user's shell
        can take it; PID 1 cannot stop itself (the kernel ignores it).
        """
        self.stopped = True
        tty = self.child.tty
        if tty is not None:
            try:
                if os.tcgetpgrp(tty) == self.child.pgid:
                    os.tcsetpgrp(tty, os.getpgrp())
            except OSError:  # the terminal hung up meanwhile
                self.child.tty = None
        if self.me == 1:
            self.report.info(f"{why}: PID 1 cannot stop itself, only the command stops")
            return
        self.report.info(f"{why}: stopping the init too, like a shell job")
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

    def resume_child(self) -> bool:
        """SIGCONT after a job-control stop: give back the terminal, wake the whole group.

        Returns whether there was a stop to resume from.
        """
        if not self.stopped or self.status is not None:
            return False
        self.stopped = self.job_stop_forwarded = False
        self.report.info(f"continued: SIGCONT to process group {self.child.pgid}")
        tty = self.child.tty
        if tty is not None:
            try:
                if os.tcgetpgrp(tty) == os.getpgrp():  # fg, not bg: hand it over
                    os.tcsetpgrp(tty, self.child.pgid)
            except OSError:
                self.child.tty = None
        send(-self.child.pgid, SIGCONT, self.on_refused)
        return True

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
            if self.report.verbose:
                who = "the command" if main else "orphan"
                self.report.info(f"reaped {who} pid {pid}: {WaitStatus(status)}")
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
