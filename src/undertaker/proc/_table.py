"""A process table kept current by the kernel's process events, not by rescanning.

A full scan reads every process (about 10 us each); most of them have not
changed since the last one. :class:`EventTable` scans once, then listens to
the proc connector (:mod:`undertaker.proc._connector`) and reads again only
the processes an event named: a fork, an exit (of a thread or a process),
an exec, a new name, new ids or session, a tracer. A snapshot then costs
what changed, not the size of the table.

What events cannot say, and how the table copes:

- **Reaping.** The kernel announces the exit, not the ``wait()`` that
  removes the zombie: each snapshot checks every zombie is still there, one
  ``stat`` of its ``stat`` file (its inode is its own until it is reaped).
- **Re-parenting.** When a process dies its children move to a reaper
  without an event: they are read again when their parent is seen dead.
- **Sleeping, running, stopped.** State letters of live processes change
  without events: they are as of the process's last read, and every
  ``resync`` seconds a full scan reconciles the whole table.
- **Lost events.** When the receive buffer overflows the kernel drops events
  and says so (``ENOBUFS``): the next snapshot is a full rescan.

The exits are what the table adds: each EXIT event carries the kernel's
CLOCK_MONOTONIC time, so a zombie that died while the table listened has an
exact age (``Snapshot.exit_times``), where a scan only has an estimate from
the scheduler clock (:class:`~undertaker.proc.ExitClock`). A thread group
dies with its last thread: its time of death is the last EXIT of its tgid.

Events name PIDs of the initial PID namespace, and subscribing needs root
there for a large buffer: elsewhere the table says why (``fallback``) and
every snapshot is a full scan.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import Counter
from typing import TYPE_CHECKING

from undertaker._control_errors import NotSupported
from undertaker._errors import AccessDenied, ProcUnavailable
from undertaker.proc._connector import DEFAULT_RCVBUF, ProcEvents, in_initial_pid_namespace
from undertaker.proc._read import ZombieReader
from undertaker.proc._scan import Process, Snapshot, ZombieKey, _read_table, scan
from undertaker.proc._system import (
    cgroup_pids,
    clock_ticks,
    event_boot_offset_ns,
    pid_max,
    timens_monotonic_offset_ns,
)

if TYPE_CHECKING:
    from undertaker.proc._connector import Batch

DEFAULT_RESYNC = 60.0  # seconds between full scans that reconcile the table

# The subscription is the socket's, which a forked child shares: were the
# child to unsubscribe when it exits (its finalizers run on sys.exit), the
# parent would silently stop receiving events. Children forget their copies.
_OPEN: weakref.WeakSet[EventTable] = weakref.WeakSet()


def _forget_in_child() -> None:
    for table in list(_OPEN):
        table.forget_in_child()


os.register_at_fork(after_in_child=_forget_in_child)


class EventCounts:
    """What an :class:`EventTable` has seen and done since it started (monotonic counters)."""

    def __init__(self) -> None:
        """Start every counter at zero."""
        self.forks = 0  # fork events (processes and threads)
        self.exits = 0  # exit events (one per thread)
        self.changes = 0  # exec, comm, uid, gid, sid and ptrace events
        self.overflows = 0  # times the kernel reported dropped events (ENOBUFS)
        self.scans = 0  # full scans: the first, after each overflow, each resync
        self.reads = 0  # processes read again because an event named them
        self.corrections = 0  # processes a resync found the events had left wrong

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return dict(vars(self))


def _why_not(root: str) -> str | None:
    """Why events cannot keep a table of *root* current here, or None if they can."""
    if root != "/proc":
        return f"events describe the live system, not {root}"
    if os.geteuid() != 0:
        return "process events need root (a large enough receive buffer needs CAP_NET_ADMIN)"
    if not in_initial_pid_namespace():
        return "not in the initial PID namespace: process events carry the host's PIDs"
    return None


class EventTable:
    """The process table, scanned once and then kept current from process events.

    >>> with EventTable() as table:  # doctest: +SKIP
    ...     snap = table.snapshot()  # a Snapshot, as scan() returns
    ...     snap.source, snap.exit_times

    Args:
        root: the procfs; only ``/proc`` can be followed by events.
        resync: seconds after which a snapshot is a full scan again,
            reconciling what events do not announce (see the module docs).
        owners: read every process's owner, as ``scan(owners=True)``.
        rcvbuf: the receive buffer for events in bytes (default 32 MiB,
            which kept up with 10,000 forks here); smaller loses events
            under bursts, and each loss costs a full rescan.

    Where events cannot be used (not root, a container, no connector),
    :attr:`fallback` says why and every :meth:`snapshot` is a full scan.
    Close the table (or leave the ``with`` block): the subscription is the
    kernel's, and it keeps generating events for every fork and exit on the
    machine until this socket unsubscribes. Not thread-safe: call it from
    one thread at a time.
    """

    def __init__(
        self,
        root: str = "/proc",
        *,
        resync: float = DEFAULT_RESYNC,
        owners: bool = False,
        rcvbuf: int = DEFAULT_RCVBUF,
    ) -> None:
        """Subscribe, then take the first full scan (events during it are applied later)."""
        self.root = root.rstrip("/") or "/"
        self.resync = resync
        self.owners = owners
        self.counts = EventCounts()
        self.fallback = _why_not(self.root)
        self._events: ProcEvents | None = None
        self._dir_fd = -1
        self._procs: dict[int, Process] = {}
        self._keys: dict[int, ZombieKey] = {}
        self._kids: dict[int, set[int]] = {}  # ppid -> pids: who is re-parented on a death
        self._exit_at: dict[int, float] = {}  # zombie pid -> exact time of death (epoch)
        # tgid -> its last EXIT, not yet read: (epoch, seconds on stat's boot clock)
        self._died: dict[int, tuple[float, float]] = {}
        # zombie pid -> (nspid, exited_at) as a ZombieReader read it: fixed until reaped
        self._reads: dict[int, tuple[tuple[int, ...], float | None]] = {}
        self._dirty: set[int] = set()
        self._states: Counter[str] = Counter()  # the table's state_counts, kept as it changes
        self._pids_used = 0  # and its pids_used
        self._unreadable: set[int] = set()
        self._scan_unreadable = 0
        self._lost = False
        self._synced = self._synced_wall = 0.0
        self._boot = 0.0
        self._hidepid: str | None = None
        if self.fallback is not None:
            return
        try:
            self._events = ProcEvents(rcvbuf=rcvbuf, changes=True)
        except (NotSupported, AccessDenied) as err:
            self.fallback = str(err)
            return
        _OPEN.add(self)
        try:
            self._dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._rescan()
        except BaseException:
            self.close()
            raise

    @property
    def source(self) -> str:
        """``"events"`` while following events, ``"scan"`` when every snapshot rescans."""
        return "events" if self._events is not None else "scan"

    def fileno(self) -> int:
        """The events socket: readable when events wait (for ``select``); -1 if none."""
        return self._events.fileno() if self._events is not None else -1

    def update(self) -> None:
        """Take the waiting events in, without reading anything yet (cheap; never blocks)."""
        if self._events is None:
            return
        self._apply(self._events.read_all())

    def _apply(self, batch: Batch) -> None:
        counts = self.counts
        counts.forks += len(batch.forks)
        counts.exits += len(batch.exits)
        counts.changes += len(batch.changes)
        if batch.lost:
            counts.overflows += 1
            self._lost = True
        dirty, died = self._dirty, self._died
        for fork in batch.forks:
            if fork.child_pid == fork.child_tgid:
                died.pop(fork.child_tgid, None)  # a new process: an old exit is another's
            dirty.add(fork.child_tgid)  # a new process, or one more thread
        if batch.exits:
            # Event stamps are the host's CLOCK_MONOTONIC: to the epoch for ages, and
            # to the boot clock of stat start times, to tell an exit from an older PID's.
            epoch = time.time() - (time.monotonic_ns() - timens_monotonic_offset_ns()) / 1e9
            boot = event_boot_offset_ns()
            for ex in batch.exits:
                at = epoch + ex.timestamp_ns / 1e9
                if at > died.get(ex.tgid, (0.0, 0.0))[0]:  # a process dies with its last thread
                    died[ex.tgid] = (at, (ex.timestamp_ns + boot) / 1e9)
                dirty.add(ex.tgid)
        for change in batch.changes:
            dirty.add(change.tgid)

    def snapshot(self) -> Snapshot:
        """Return the table now, as :func:`~undertaker.proc.scan` would.

        With events: apply them, read again the processes they named and
        check each zombie is still unreaped; a full scan instead after lost
        events or when ``resync`` seconds have passed. Without: a full scan.

        Raises:
            ProcUnavailable: the procfs cannot be read.
        """
        if self._events is None:
            return scan(self.root, owners=self.owners)
        self.update()
        if self._lost:
            self._rescan()  # events were dropped: the table cannot say which
        elif time.monotonic() - self._synced >= self.resync:
            self._refresh()  # so that the scan compares with what the events said
            self._rescan(reconcile=True)
        else:
            self._refresh()
        taken_at, monotonic = time.time(), time.monotonic()
        cgroup = cgroup_pids(self.root)
        limit = pid_max(self.root)
        self._read_new_zombies(taken_at, monotonic)
        snap = Snapshot(
            self.root,
            dict(self._procs),
            taken_at=taken_at,
            boot_time=self._boot,
            pid_max=limit,
            unreadable=self._scan_unreadable + len(self._unreadable),
            hidepid=self._hidepid,
            cgroup_pids=cgroup,
            zombie_keys=dict(self._keys),
            monotonic=monotonic,
            source="events",
            synced_at=self._synced_wall,
            exit_times=dict(self._exit_at),
            zombie_reads={pid: self._reads[pid] for pid in self._keys if pid in self._reads},
        )
        snap.prime(self._keys, +self._states, self._pids_used)  # +: drops zero counts
        return snap

    def _read_new_zombies(self, taken_at: float, monotonic: float) -> None:
        """Read NSpid and time of death once per zombie, as the census would each time."""
        new = [
            self._procs[pid]
            for pid in self._keys
            if pid not in self._reads and self._procs[pid].is_zombie
        ]
        if not new:
            return
        view = Snapshot(  # the table as it is, for the reader: nothing is copied
            self.root,
            self._procs,
            taken_at=taken_at,
            boot_time=self._boot,
            pid_max=None,
            zombie_keys=self._keys,
            monotonic=monotonic,
            exit_times=self._exit_at,
        )
        reader = ZombieReader(view)
        for proc in new:
            read = reader.read(proc)
            if read is not None:  # None: reaped since; the next snapshot drops it
                self._reads[proc.pid] = read

    def _rescan(self, *, reconcile: bool = False) -> None:
        """Replace the table with a full scan; keep exact exit times that still apply.

        With *reconcile*, count the processes the scan found otherwise than
        the table had them (``counts.corrections``), leaving out those an
        event named while the scan ran.
        """
        self._lost = False
        self._dirty.clear()  # the scan reads everything the events named so far
        snap = scan(self.root, owners=self.owners)
        self.counts.scans += 1
        old, self._procs = self._procs, dict(snap.processes)
        if reconcile:
            self.update()  # what changed during the scan is churn, not a correction
            self.counts.corrections += _differences(old, self._procs, self._dirty)
        self._keys = dict(snap.zombie_keys)
        self._kids = {}
        for proc in self._procs.values():
            self._kids.setdefault(proc.ppid, set()).add(proc.pid)
        self._states = Counter(snap.state_counts)
        self._pids_used = snap.pids_used
        exit_at, self._exit_at = self._exit_at, {}
        reads, self._reads = self._reads, {}
        tick = 1.0 / clock_ticks()
        for pid in self._keys:
            proc = self._procs[pid]
            before = old.get(pid)
            if before is not None and before.start_ticks == proc.start_ticks:
                if pid in exit_at:
                    self._exit_at[pid] = exit_at[pid]
                if pid in reads and proc.is_zombie and before.is_zombie:
                    self._reads[pid] = reads[pid]
            self._time_death(proc, tick)
        self._died.clear()
        self._unreadable.clear()
        self._scan_unreadable = snap.unreadable
        self._boot, self._hidepid = snap.boot_time, snap.hidepid
        self._synced, self._synced_wall = snap.monotonic or time.monotonic(), snap.taken_at

    def _time_death(self, proc: Process, tick: float) -> None:
        """Give zombie *proc* its EXIT time, if one came for it (and not for an older PID)."""
        died = self._died.pop(proc.pid, None)
        if died is not None and proc.is_zombie and died[1] >= proc.start_ticks * tick:
            self._exit_at.setdefault(proc.pid, died[0])

    def _refresh(self) -> None:
        """Read again what events named, plus every zombie (reaping has no event)."""
        dirty, self._dirty = self._dirty, set()
        stat, fd = os.stat, self._dir_fd
        for pid, key in self._keys.items():
            if pid not in dirty:
                try:
                    if stat(f"{pid}/stat", dir_fd=fd).st_ino == key.stat_inode:
                        continue  # the same zombie, still unreaped
                except OSError:
                    pass  # reaped (or hidden): the read below says which
                dirty.add(pid)
        done: set[int] = set()
        tick = 1.0 / clock_ticks()
        while dirty:
            done |= dirty
            orphans = self._read(dirty, tick)
            dirty = orphans - done

    def _read(self, pids: set[int], tick: float) -> set[int]:
        """Read *pids* again into the table; return the children of those that died."""
        skipped: list[str] = []
        try:
            found, keys, _, _ = _read_table(
                [str(pid) for pid in pids], self._dir_fd, self._boot, self.owners, skipped=skipped
            )
        except OSError as err:  # _read_table expects vanishing entries, not a broken root
            raise ProcUnavailable(self.root, err.strerror or str(err)) from None
        self.counts.reads += len(pids)
        hidden = {int(name) for name in skipped}
        orphans: set[int] = set()
        states = self._states
        for pid in pids:
            old = self._procs.get(pid)
            new = found.get(pid)
            if old is not None:
                states[old.state] -= 1
                self._pids_used -= old.threads or 1
            if new is not None:
                states[new.state] += 1
                self._pids_used += new.threads or 1
            if old is not None and (new is None or old.ppid != new.ppid):
                self._kids.get(old.ppid, set()).discard(pid)
            if new is None:
                self._forget(pid)
                if pid in hidden:
                    self._unreadable.add(pid)
            else:
                self._unreadable.discard(pid)
                self._procs[pid] = new
                self._kids.setdefault(new.ppid, set()).add(pid)
                if old is None or old.start_ticks != new.start_ticks or not new.is_zombie:
                    self._reads.pop(pid, None)  # a new process, or no longer a zombie
                if old is not None and old.start_ticks != new.start_ticks:
                    self._exit_at.pop(pid, None)  # a reused PID: the old death is not its
                if pid in keys:
                    self._keys[pid] = keys[pid]
                else:
                    self._keys.pop(pid, None)
                if new.is_zombie:
                    self._time_death(new, tick)
                else:
                    self._exit_at.pop(pid, None)
                    self._died.pop(pid, None)  # a thread's exit, or the leader's alone
            if old is not None and not old.is_zombie and (new is None or new.is_zombie):
                orphans |= self._kids.get(pid, set())  # moved to a reaper, without an event
            if new is None:
                self._kids.pop(pid, None)  # those are read again, under their new parent
        return orphans

    def _forget(self, pid: int) -> None:
        self._reads.pop(pid, None)
        self._procs.pop(pid, None)
        self._keys.pop(pid, None)
        self._exit_at.pop(pid, None)
        self._died.pop(pid, None)
        self._unreadable.discard(pid)

    def close(self) -> None:
        """Unsubscribe from the kernel's events and close; safe to call twice."""
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def forget_in_child(self) -> None:
        """In the child of ``fork()``: drop this copy, leaving the parent subscribed.

        Called by itself after every ``os.fork()``; the child's table then scans.
        """
        if self._events is not None:
            self._events.forget_in_child()
            self._events = None
            self.fallback = "a copy inherited through fork(): the parent's subscription"

    def __enter__(self) -> EventTable:  # noqa: PYI034  (Self needs 3.11)
        """Use as a context manager: closed (and unsubscribed) on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the block."""
        self.close()


def _differences(old: dict[int, Process], new: dict[int, Process], moving: set[int]) -> int:
    """How many processes differ in ways events should have told, *moving* left out.

    Not counted: a zombie gone (reaping has no event), and a kernel thread's
    new name (a kworker shows the workqueue it serves, changed without one).
    """
    changed = sum(1 for pid in new.keys() - old.keys() - moving)
    changed += sum(1 for pid in old.keys() - new.keys() - moving if not old[pid].is_zombie)
    for pid in old.keys() & new.keys() - moving:
        a, b = old[pid], new[pid]
        renamed = a.comm != b.comm and b.ppid not in (0, 2)  # 2: kthreadd, kernel threads
        if a.ppid != b.ppid or renamed or a.is_zombie != b.is_zombie:
            changed += 1
    return changed
