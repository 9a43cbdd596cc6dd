"""One pass over ``/proc`` into immutable records.

The scan reads one ``stat`` file and stats one directory per process, which
is all a process table needs: everything else (``status`` with the NSpid
chain and signal masks, ``cmdline``) is read on demand through
:mod:`undertaker.proc._read`. For zombies it also keeps what makes those
later reads cheap and safe (:class:`ZombieKey`). The hot loop is kept flat on
purpose: at 10,000 processes every microsecond per process is 10 ms.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

from undertaker._errors import ProcUnavailable
from undertaker.proc._read import ExitClock, ZombieReader
from undertaker.proc._split import read_split, worth_splitting
from undertaker.proc._stat import (
    EXIT_CODE,
    NUM_THREADS,
    PGRP,
    PPID,
    PROCESSOR,
    SESSION,
    STARTTIME,
    STATE,
)
from undertaker.proc._system import boot_time, cgroup_pids, clock_ticks, hidepid, pid_max

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from undertaker.proc._held import HeldStatFiles
    from undertaker.proc._split import Reads, Table

_CALIBRATE_AHEAD = 8  # CPUs: see _calibrated()
_STAT_READ = 2048  # a stat line is ~350 bytes plus the name; re-read if it fills this


class Process(NamedTuple):
    """One process (thread group) as the scan saw it.

    ``state`` is the letter of ``/proc/PID/stat`` (R S D Z T t X I ...). For a
    thread-group leader that ended with ``pthread_exit`` while other threads
    run, the kernel shows ``Z`` although the process is alive: use
    :attr:`is_zombie` and :attr:`is_zombie_leader`, never ``state == "Z"``.
    """

    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int
    sid: int
    threads: int  # live threads; a true zombie keeps 1 until it is reaped
    start_ticks: int  # clock ticks after boot; with pid, identifies the process
    exit_code: int | None  # raw wait status the kernel keeps (meaningful for zombies)
    uid: int | None  # owner of /proc/PID, the effective uid; see scan(owners=...)
    started: float  # seconds since the epoch

    @property
    def tgid(self) -> int:
        """The thread-group id: for an entry of ``/proc`` it is the PID."""
        return self.pid

    @property
    def is_zombie(self) -> bool:
        """Whether the whole thread group is dead and waits for its parent."""
        return self.state == "Z" and self.threads <= 1

    @property
    def is_zombie_leader(self) -> bool:
        """Whether the leader exited but other threads live on (not reapable yet)."""
        return self.state == "Z" and self.threads > 1

    @property
    def identity(self) -> tuple[int, int]:
        """``(pid, start_ticks)``: unique for the lifetime of the boot."""
        return (self.pid, self.start_ticks)


class ZombieKey(NamedTuple):
    """What the scan kept of a zombie (or zombie leader) for the reads that follow it."""

    stat_inode: int  # inode of /proc/PID/stat, taken while the scan held it open
    cpu: int | None  # the CPU it last ran on: whose scheduler clock timed its exit


class Snapshot:
    """The result of one scan: the process table and what could not be read.

    Treat it as immutable: the derived views are computed once, on first use.
    (A plain class: ``dataclasses`` costs 6 ms of import, a tenth of a CLI run.)
    """

    def __init__(
        self,
        root: str,
        processes: Mapping[int, Process],
        *,
        taken_at: float,
        boot_time: float,
        pid_max: int | None,
        unreadable: int = 0,
        vanished: int = 0,
        hidepid: str | None = None,
        cgroup_pids: tuple[int, int, str] | None = None,
        zombie_keys: Mapping[int, ZombieKey] | None = None,
        monotonic: float | None = None,
        source: str = "scan",
        synced_at: float | None = None,
        exit_times: Mapping[int, float] | None = None,
        zombie_reads: Mapping[int, tuple[tuple[int, ...], float | None]] | None = None,
    ) -> None:
        """Hold one scan's results; see :func:`scan` and :class:`~undertaker.proc.EventTable`."""
        self.root = root
        self.processes = processes
        self.taken_at = taken_at  # time.time() when the scan began
        self.boot_time = boot_time
        self.pid_max = pid_max
        self.unreadable = unreadable  # entries we may not read (hidepid, other users)
        self.vanished = vanished  # entries that exited between listing and reading
        self.hidepid = hidepid
        self.cgroup_pids = cgroup_pids  # (current, limit, cgroup dir) of the tightest pids limit
        # By PID, for the zombies and zombie leaders: see ZombieReader.
        self.zombie_keys: Mapping[int, ZombieKey] = zombie_keys or {}
        self.monotonic = monotonic  # time.monotonic() when the scan began
        # "scan": one pass over /proc; "events": an EventTable kept current by
        # the kernel's process events since its last full scan at synced_at.
        self.source = source
        self.synced_at = taken_at if synced_at is None else synced_at
        # By PID, the exact time of death (epoch) of zombies that died while an
        # EventTable listened; others only have the estimate ZombieReader makes.
        self.exit_times: Mapping[int, float] = exit_times or {}
        # By PID, what a ZombieReader would read of each zombie, (nspid,
        # exited_at), read earlier by an EventTable or a split scan and
        # vouched for at taken_at (a zombie's are fixed until it is reaped):
        # the census reads nothing.
        self.zombie_reads = zombie_reads or {}

    def prime(self, zombie_pids: Iterable[int], state_counts: Counter[str], pids_used: int) -> None:
        """Fill the derived views from a source that keeps them (an EventTable).

        *zombie_pids* lists every process in state Z (zombies and zombie
        leaders): the views then cost what the zombies cost, not the table.
        """
        found = [self.processes[pid] for pid in zombie_pids]
        found.sort(key=lambda p: (p.start_ticks, p.pid))
        self.__dict__["zombies"] = [p for p in found if p.is_zombie]
        self.__dict__["zombie_leaders"] = [p for p in found if p.is_zombie_leader]
        self.__dict__["state_counts"] = state_counts
        self.__dict__["pids_used"] = pids_used

    @property
    def table_age(self) -> float:
        """Seconds since the table last agreed with a full scan (0 for a scan)."""
        return max(self.taken_at - self.synced_at, 0.0)

    def __repr__(self) -> str:
        """Summarise: root, size and the counts that matter."""
        return (
            f"<Snapshot {self.root} ({self.source}): {len(self.processes)} processes, "
            f"{len(self.zombies)} zombies, {self.unreadable} unreadable>"
        )

    @cached_property
    def zombies(self) -> list[Process]:
        """True zombies, oldest first."""
        found = [p for p in self.processes.values() if p.is_zombie]
        found.sort(key=lambda p: (p.start_ticks, p.pid))
        return found

    @cached_property
    def zombie_leaders(self) -> list[Process]:
        """Live processes whose leader thread shows ``Z``, oldest first."""
        found = [p for p in self.processes.values() if p.is_zombie_leader]
        found.sort(key=lambda p: (p.start_ticks, p.pid))
        return found

    @cached_property
    def state_counts(self) -> Counter[str]:
        """How many processes are in each state letter."""
        return Counter(p.state for p in self.processes.values())

    @cached_property
    def pids_used(self) -> int:
        """PIDs in use: every live thread takes one, and so does every zombie."""
        return sum(p.threads or 1 for p in self.processes.values())

    @cached_property
    def _by_parent(self) -> dict[int, list[Process]]:
        table: dict[int, list[Process]] = {}
        for proc in self.processes.values():
            table.setdefault(proc.ppid, []).append(proc)
        for kids in table.values():
            kids.sort()
        return table

    def children(self, pid: int) -> list[Process]:
        """Return the processes whose parent is *pid*, by PID."""
        return self._by_parent.get(pid, [])


def scan(
    root: str = "/proc",
    *,
    owners: bool = True,
    split: bool = False,
    held: HeldStatFiles | None = None,
    zombie_reads: bool = False,
) -> Snapshot:
    """Read the whole process table once.

    Processes that exit while the scan runs are skipped and counted in
    ``vanished``; entries we may not read are counted in ``unreadable``.

    Args:
        root: the procfs mount to read; tests point it at captured trees.
        owners: read every process's owner (one ``stat`` of ``/proc/PID``,
            about 10% of the scan). When False, ``uid`` is read only for
            zombies and zombie leaders and is None for the rest: for callers
            that neither filter nor print by user.
        split: let a forked helper read half of a large table on a second
            CPU (see :mod:`undertaker.proc._split`). Taken only when this
            process runs a single thread and has another CPU, and without
            *held*; the records are the same either way. For short-lived
            commands: a long-running program with a large heap pays more for
            the fork.
        held: stat files kept open from earlier scans of the same *root*
            (re-read in place, new ones added): for callers that scan
            repeatedly, such as the exporter. None opens and closes each.
        zombie_reads: with *split*, also read what a census reads of each
            zombie (NSpid, estimated time of death: ``Snapshot.zombie_reads``),
            each half on its own CPU; the census then reads nothing per
            zombie. Worth it only when the census will cover every zombie.

    Returns:
        An immutable snapshot.

    Raises:
        ProcUnavailable: the root cannot be listed, or is not a procfs.
    """
    root = root.rstrip("/") or "/"
    if held is not None and held.root != root:
        raise ValueError(f"stat files held for {held.root}, not {root}")
    taken_at, monotonic = time.time(), time.monotonic()
    try:
        names = os.listdir(root)
        # Paths relative to an open directory save resolving the root each time.
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise ProcUnavailable(root, err.strerror or str(err)) from None
    try:
        boot = boot_time(root)
    except (OSError, ValueError):
        os.close(dir_fd)
        raise ProcUnavailable(root, f"not a procfs (no btime line in {root}/stat)") from None

    clock: ExitClock | None = None

    def read(some: list[str], reads: bool = False) -> Table:
        procs, keys, unreadable, vanished = _read_table(some, dir_fd, boot, owners, held)
        found: Reads = {}
        if reads and keys:
            part = Snapshot(
                root,
                procs,
                taken_at=taken_at,
                boot_time=boot,
                pid_max=None,
                zombie_keys=keys,
                monotonic=monotonic,
            )
            found = _read_zombies(part, clock)
        return procs, keys, unreadable, vanished, found

    try:
        if split and held is None and worth_splitting(len(names)):
            if zombie_reads:
                clock = _calibrated(root)
            table = read_split(names, lambda some: read(some, zombie_reads), _add_plain)
        else:
            table = read(names)
        processes, keys, unreadable, vanished, reads = table
    finally:
        os.close(dir_fd)
    if held is not None:
        held.prune(names)
    return Snapshot(
        root=root,
        processes=processes,
        taken_at=taken_at,
        boot_time=boot,
        pid_max=pid_max(root),
        unreadable=unreadable,
        vanished=vanished,
        hidepid=hidepid(root),
        cgroup_pids=cgroup_pids(root),
        zombie_keys=keys,
        monotonic=monotonic,
        zombie_reads=reads,
    )


def _calibrated(root: str) -> ExitClock | None:
    """An ExitClock calibrated on each CPU we may run on, when there are few.

    Calibrating moves the process onto each CPU in turn: done before the
    split's fork, the two copies never move onto the CPU the other is busy
    on. With many CPUs, each is calibrated when a zombie first needs it.
    """
    cpus = os.sched_getaffinity(0)
    if len(cpus) > _CALIBRATE_AHEAD:
        return None
    clock = ExitClock(root)
    clock.calibrate(sorted(cpus))
    return clock


def _read_zombies(part: Snapshot, clock: ExitClock | None) -> Reads:
    """Read what the census reads of each zombie in *part*; skip those reaped since."""
    reader = ZombieReader(part, clock=clock)
    found: Reads = {}
    for proc in part.zombies:
        read = reader.read(proc)  # checks identity after reading
        if read is not None:
            found[proc.pid] = read
    return found


def _add_plain(
    table: Table, procs: list[tuple[object, ...]], keys: list[tuple[object, ...]]
) -> None:
    """Add records that came as plain tuples (from the split's helper) to *table*."""
    new = tuple.__new__
    processes, zombie_keys = table[0], table[1]
    for fields in procs:
        processes[fields[0]] = new(Process, fields)  # type: ignore[index]
    for pid, *key in keys:
        zombie_keys[pid] = new(ZombieKey, key)  # type: ignore[index]


def _read_table(
    names: list[str],
    dir_fd: int,
    boot: float,
    owners: bool,
    held: HeldStatFiles | None = None,
    *,
    skipped: list[str] | None = None,
) -> tuple[dict[int, Process], dict[int, ZombieKey], int, int]:
    """Read the ``stat`` of each PID in *names*; *skipped* collects the unreadable ones."""
    tick = 1.0 / clock_ticks()
    euid = os.geteuid()
    processes: dict[int, Process] = {}
    keys: dict[int, ZombieKey] = {}
    unreadable = vanished = 0
    retry: list[str] = []  # held files whose process went; the PID may be someone new
    stat, open_, pread, close = os.stat, os.open, os.pread, os.close
    flags = os.O_RDONLY | os.O_CLOEXEC  # a held file must not leak into children
    fstat = os.fstat
    fds: dict[str, int] = held.fds if held is not None else {}
    room = held.capacity - len(fds) if held is not None else 0
    new = tuple.__new__  # Process(...) without the Python-level __new__ of a NamedTuple
    for name in names:
        if not (name.isdigit() and name.isascii()):
            continue
        try:
            uid = stat(name, dir_fd=dir_fd).st_uid if owners else None
            fd = fds.get(name, -1)
            keep = reused = fd >= 0
            if not keep:
                fd = open_(name + "/stat", flags, dir_fd=dir_fd)
                if room > 0:
                    fds[name] = fd
                    room -= 1
                    keep = True
            try:
                data = pread(fd, _STAT_READ, 0)
                while len(data) % _STAT_READ == 0 and data:
                    more = pread(fd, _STAT_READ, len(data))
                    if not more:
                        break
                    data += more
                rpar = data.rfind(b")")
                # A zombie's stat inode stays its own until it is reaped (a
                # reused PID gets new inodes): taken here, while the file is
                # surely this process's, it lets ZombieReader skip re-reading.
                inode = fstat(fd).st_ino if data[rpar + 2 : rpar + 3] == b"Z" else 0
            finally:
                if not keep:
                    close(fd)
        except (FileNotFoundError, ProcessLookupError):
            # Exited between listdir and here: normal, not an error. A held file
            # of a reaped process fails so even if its PID was reused since; the
            # PID is read once more below, from a fresh file, in case it was.
            if held is not None:
                held.drop(name)
                if reused:
                    retry.append(name)
                    continue
            vanished += 1
            continue
        except OSError:
            unreadable += 1  # EACCES under hidepid
            if skipped is not None:
                skipped.append(name)
            continue
        # parse_stat() inlined, with the same checks (tests compare the two on
        # captured and hostile files): a call and a StatFields per process cost
        # ~10% of the scan at 10,000 processes. Only zombies need field 52, so
        # the others split just the fields up to starttime.
        lpar = data.find(b"(")
        tail = data[rpar + 2 :].split(None, STARTTIME + 1)
        if lpar < 0 or rpar < lpar or len(tail) <= STARTTIME:
            unreadable += 1  # not a stat line
            continue
        try:
            state = tail[STATE].decode("ascii")
            ppid, pgid, sid = int(tail[PPID]), int(tail[PGRP]), int(tail[SESSION])
            threads, start_ticks = int(tail[NUM_THREADS]), int(tail[STARTTIME])
            exit_code = None
            pid = int(name)
            if state == "Z":
                tail = data[rpar + 2 :].split()
                exit_code = int(tail[EXIT_CODE]) if len(tail) > EXIT_CODE else None
                if uid is None:
                    uid = stat(name, dir_fd=dir_fd).st_uid
                if euid not in (0, uid):
                    exit_code = None  # the kernel writes 0 unless we may ptrace-read it
                keys[pid] = ZombieKey(
                    inode, int(tail[PROCESSOR]) if len(tail) > PROCESSOR else None
                )
        except (ValueError, UnicodeDecodeError):
            unreadable += 1  # a field that is not a number
            continue
        except (FileNotFoundError, ProcessLookupError):
            vanished += 1  # reaped while we looked at it
            continue
        processes[pid] = new(
            Process,
            (
                pid,
                data[lpar + 1 : rpar].decode("utf-8", "backslashreplace"),  # decode_comm()
                state,
                ppid,
                pgid,
                sid,
                threads,
                start_ticks,
                exit_code,
                uid,
                boot + start_ticks * tick,
            ),
        )
    if retry:  # fresh files now: a second failure means the PID is really gone
        again = _read_table(retry, dir_fd, boot, owners, held)
        processes.update(again[0])
        keys.update(again[1])
        unreadable += again[2]
        vanished += again[3]
    return processes, keys, unreadable, vanished
