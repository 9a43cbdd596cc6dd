"""The drain: the stop signal to every descendant, a grace period, SIGKILL, reap.

The stop signal is SIGTERM, or what ``-r TERM:...`` rewrites it to. It goes
once to each process the drain finds: while the main child runs, only to
the subtrees of adopted orphans (the main child stops its own workers);
once it has exited, to everything left. A process that appears *after* the
stop signal reached its parent, a shutdown hook's helper (``sleep 2``, a
flush script), is spared: it gets the rest of the grace period to finish.
At the deadline everything left, spared or not, gets SIGKILL.
"""

from __future__ import annotations

import os
import time

from undertaker.init import _drain
from undertaker.init._signals import SIGKILL, send
from undertaker.wait import signal_name  # loaded with the package already

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from undertaker.init._options import Options
    from undertaker.init._report import Reporter, Stats
    from undertaker.init._spawn import Child

DRAIN_POLL = 0.25  # catch processes forked or adopted during the drain
KILL_POLL = 0.1  # after SIGKILL: look again for late forks
GIVE_UP_AFTER_KILL = 5.0  # D-state processes cannot die; do not hang forever

Ident = tuple[int, int]  # (pid, starttime): one process, never a reused PID


class Drain:
    """The drain of one init: its deadline, and who was told, spared or refused."""

    def __init__(
        self,
        child: Child,
        options: Options,
        report: Reporter,
        stats: Stats,
        refused: Callable[[int], None],
        *,
        proc: bool,
    ) -> None:
        """Prepare (not start) the drain; *refused* is told of every EPERM."""
        self.child = child
        self.grace = options.grace
        self.stop_signal = options.stop_signal()
        self.report = report
        self.stats = stats
        self.refused = refused
        self.proc = proc
        self.me = os.getpid()
        self.deadline: float | None = None
        self.killing_since: float | None = None
        self.main_told = False  # the main child got a terminating signal forwarded
        self.signalled: set[Ident] = set()  # told to stop (or killed) by the drain
        self.spared: set[Ident] = set()  # appeared below a process already told
        self.seen: set[Ident] = set()  # every process an earlier pass found
        self.last_tick: int | None = None  # boot_tick() of the previous look at the tree
        self.blind_told = False  # without /proc: the one stop signal was sent
        self.blind_group_gone = False  # without /proc: the main child's group emptied once

    @property
    def since(self) -> str:
        """``10s after SIGTERM`` (or its rewrite), for the warning at the deadline."""
        if not self.stop_signal:
            return f"{self.grace:g}s into the drain (-r TERM:0: no stop signal sent)"
        return f"{self.grace:g}s after {signal_name(self.stop_signal)}"

    def before_telling_main(self) -> None:
        """Just before a terminating signal is forwarded: note what exists already.

        What the main child forks from then on belongs to its shutdown, and
        is spared; what was there before is not. Only our own tree is walked,
        so the forward is not delayed by a large process table.
        """
        if self.proc:
            tick = _drain.boot_tick()
            tree = _drain.walk(self.me)
            self._look(tick, _drain.scan(self.me) if tree is None else tree)
        self.main_told = True

    def start(self, why: str) -> None:
        """Start the grace period now."""
        self.deadline = time.monotonic() + self.grace
        if self.report.verbose:
            told = signal_name(self.stop_signal) if self.stop_signal else "no stop signal"
            self.report.info(f"drain: {why}; {told} to what is left, SIGKILL after {self.grace:g}s")

    def timeout(self, now: float) -> float:
        """How long the loop may sleep before the next drain pass."""
        if self.killing_since is not None:
            return KILL_POLL
        if self.deadline is not None:
            return min(DRAIN_POLL, self.deadline - now)
        return DRAIN_POLL

    def step(self, main_alive: bool, refused: set[int]) -> bool:
        """One drain pass; True when the init should stop waiting and exit.

        *refused*: the PIDs that refused our signals (EPERM) so far.
        """
        now = time.monotonic()
        assert self.deadline is not None  # noqa: S101  (only called while draining)
        if not self.proc:
            return self._blind_step(now, self.deadline, main_alive)
        if now < self.deadline:
            if not self.stop_signal:
                return False  # -r TERM:0: nothing to send before SIGKILL
            tick = _drain.boot_tick()
            tree = _drain.scan(self.me)
            skip = _drain.subtree(tree, self.child.pid) if main_alive else set()
            self._tell(tree, skip)
            self._look(tick, tree)
            self.stats.drained = len(self.signalled)
            return not main_alive and _only_refused(tree, refused)
        if self.killing_since is None:
            self.killing_since = now
            left = _drain.scan(self.me)
            if left:
                what = "1 process" if len(left) == 1 else f"{len(left)} processes"
                self.report.warning(f"{what} still running {self.since}; sending SIGKILL")
        elif now - self.killing_since > GIVE_UP_AFTER_KILL:
            self.report.warning("processes survive SIGKILL (uninterruptible sleep?); exiting")
            return True
        left = _drain.scan(self.me)
        for pid, (start, _) in left.items():
            if _drain.signal_process(pid, start, SIGKILL, self.refused):
                self.signalled.add((pid, start))
        self.stats.drained = len({pid for pid, _ in self.signalled})
        return _only_refused(left, refused)

    def _look(self, tick: int, tree: dict[int, tuple[int, int]]) -> None:
        """Remember *tree*, listed from *tick* on: whatever is not in it is newer."""
        self.seen.update((pid, start) for pid, (start, _) in tree.items())
        self.last_tick = tick

    def _tell(self, tree: dict[int, tuple[int, int]], skip: set[int]) -> None:
        """Send the stop signal to every process in *tree* not skipped, told or spared."""
        self._spare_newcomers(tree)
        for pid, (start, _) in tree.items():
            ident = (pid, start)
            if pid in skip or ident in self.signalled or ident in self.spared:
                continue
            if _drain.signal_process(pid, start, self.stop_signal, self.refused):
                self.signalled.add(ident)
                if self.report.verbose:
                    self.report.info(f"drain: {signal_name(self.stop_signal)} to pid {pid}")

    def _spare_newcomers(self, tree: dict[int, tuple[int, int]]) -> None:
        """Spare the processes that appeared below a process already told to stop.

        Decided parent first, down each chain, against what earlier passes
        signalled (not this one: a process found together with its parent is
        an old one, and is told too). A newcomer whose parent has exited
        already (re-parented to the init, so its lineage is lost) is spared
        too: everything alive at the previous look was told to stop, or is
        the main child's, told by the forwarded signal.
        """
        covered: dict[int, bool] = {}  # its newcomers are spared
        for pid in tree:
            chain: list[int] = []
            up = pid
            # Stat files are read one by one: a reused PID could close a loop.
            while up in tree and up not in covered and up not in chain:
                chain.append(up)
                up = tree[up][1]
            above = covered.get(up, False)
            for node in reversed(chain):
                start, parent = tree[node]
                ident = (node, start)
                told = node == self.child.pid and self.main_told
                if ident in self.signalled or ident in self.spared or told:
                    above = True
                elif ident in self.seen:
                    above = False  # an old process, not told yet: it will be
                elif above or self._late_orphan(start, parent):
                    self.spared.add(ident)
                    if self.report.verbose:
                        self.report.info(
                            f"drain: pid {node} started after its parent was told to "
                            "stop; it may finish within the grace period"
                        )
                    above = True
                else:
                    above = False
                covered[node] = above

    def _late_orphan(self, start: int, parent: int) -> bool:
        """A newcomer re-parented to the init, started since the previous look.

        Unseen by that look, so forked after it listed /proc; the start time
        (same tick allowed: the tick was taken before listing) guards against
        a process the listing missed while it was being re-parented.
        """
        return parent == self.me and self.last_tick is not None and start >= self.last_tick

    def _blind_group(self, main_alive: bool) -> list[int]:
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
            self.blind_group_gone = not main_alive
            return []
        except PermissionError:
            pass  # members we may not signal: send() warns about them
        return [-self.child.pgid]

    def _blind_step(self, now: float, deadline: float, main_alive: bool) -> bool:
        """The drain without /proc: no list of descendants, so signal wholesale.

        As PID 1, ``kill(-1)`` reaches every process of the namespace (all of
        them our descendants); elsewhere only the main child's process group
        can be found. The stop signal is sent once, when the main child has
        exited (a second one would re-run slow handlers); SIGKILL at the
        deadline.
        """
        targets = [-1] if self.me == 1 else self._blind_group(main_alive)
        if now < deadline:
            if not main_alive and not self.blind_told:
                self.blind_told = True
                for target in targets if self.stop_signal else ():
                    send(target, self.stop_signal, self.refused)
            return False
        if self.killing_since is None:
            self.killing_since = now
            self.report.warning(f"children still running {self.since}; sending SIGKILL")
        elif now - self.killing_since > GIVE_UP_AFTER_KILL:
            self.report.warning(
                "children survive SIGKILL (uninterruptible sleep, or out of reach without "
                "/proc); exiting"
            )
            return True
        if main_alive:
            targets.append(self.child.pid)
        for target in targets:
            send(target, SIGKILL, self.refused)
        return False


def _only_refused(left: dict[int, tuple[int, int]], refused: set[int]) -> bool:
    """Whether every process left refused our signals (EPERM), so waiting cannot help.

    As PID 1, the init's exit has the kernel kill them; as a subreaper,
    they outlive it, as they would any init that may not signal them.
    """
    return bool(left) and left.keys() <= refused
