"""On-demand reads of one process: status, command line, identity, exit time.

Every function takes the procfs root, so the same code serves the live
system and captured trees.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.proc._stat import StatParseError, parse_stat
from undertaker.proc._status import Status, StatusParseError, parse_status

if TYPE_CHECKING:
    from collections.abc import Iterable

    from undertaker.proc._scan import Process, Snapshot


def _read(path: str, pid: int, limit: int = 1 << 20) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(pid) from None
    except PermissionError:
        raise AccessDenied(pid, f"reading {path}", "CAP_SYS_PTRACE or the same uid") from None
    try:
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except ProcessLookupError:
        raise NoSuchProcess(pid) from None
    finally:
        os.close(fd)


def read_status(pid: int, root: str = "/proc") -> Status:
    """Read and parse ``/proc/PID/status``.

    Raises:
        NoSuchProcess: the process is gone.
        AccessDenied: the file is hidden from us (hidepid).
    """
    try:
        return parse_status(_read(f"{root}/{pid}/status", pid))
    except StatusParseError as err:
        raise NoSuchProcess(pid, f"unreadable status: {err}") from None


def read_nspid(pid: int, root: str = "/proc") -> tuple[int, ...]:
    """Return the PID of *pid* in each nested PID namespace, outermost first.

    Only the ``NSpid:`` line of ``status`` is parsed: the full parse costs
    about 20 us, which adds up at a thousand zombies. Kernels before 4.1 have
    no such line; then the answer is ``(pid,)``.

    Raises:
        NoSuchProcess: the process is gone.
        AccessDenied: the file is hidden from us (hidepid).
    """
    return _nspid(_read(f"{root}/{pid}/status", pid), pid)


def _nspid(status: bytes, pid: int) -> tuple[int, ...]:
    start = status.find(b"\nNSpid:")
    if start < 0:
        return (pid,)
    end = status.find(b"\n", start + 1)
    try:
        return tuple(int(p) for p in status[start + 7 : end if end > 0 else None].split())
    except ValueError:
        raise NoSuchProcess(pid, "unreadable NSpid line") from None


def read_task_masks(pid: int, root: str = "/proc") -> list[Status]:
    """Read the status of every thread of *pid*: signal blocking is per thread."""
    try:
        tids = sorted(int(t) for t in os.listdir(f"{root}/{pid}/task") if t.isdigit())
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(pid) from None
    except PermissionError:
        raise AccessDenied(pid, "listing threads", "CAP_SYS_PTRACE or the same uid") from None
    found = []
    for tid in tids:
        try:
            found.append(parse_status(_read(f"{root}/{pid}/task/{tid}/status", pid)))
        except (NoSuchProcess, StatusParseError):
            continue  # the thread ended since the listing
    return found


def read_cmdline(pid: int, root: str = "/proc") -> list[str] | None:
    """Return the argument vector, or None when it is empty (zombies, kernel threads).

    Raises:
        NoSuchProcess: the process is gone.
        AccessDenied: the file is hidden from us (hidepid).
    """
    data = _read(f"{root}/{pid}/cmdline", pid)
    if not data:
        return None
    return [arg.decode("utf-8", "backslashreplace") for arg in data.rstrip(b"\0").split(b"\0")]


def read_start_ticks(pid: int, root: str = "/proc") -> int:
    """Return the start time of *pid* in clock ticks after boot.

    Raises:
        NoSuchProcess: the process is gone.
    """
    try:
        return parse_stat(_read(f"{root}/{pid}/stat", pid)).start_ticks
    except StatParseError as err:
        raise NoSuchProcess(pid, f"unreadable stat: {err}") from None


def is_same_process(pid: int, start_ticks: int, root: str = "/proc") -> bool:
    """Whether *pid* still names the process that started at *start_ticks*.

    PIDs are reused; a PID plus its start time is not (within one boot).
    """
    try:
        return read_start_ticks(pid, root) == start_ticks
    except NoSuchProcess:
        return False


# se.exec_start is on the third line of ``sched``, after the task's name
# (at most 64 bytes with its PID) and a rule: one read of this many bytes
# holds it, where reading the whole file (~2 KiB) takes two.
_SCHED_HEAD = 512


def _exec_start_ms(data: bytes) -> float | None:
    at = data.find(b"se.exec_start")
    if at < 0:
        return None
    line_end = data.find(b"\n", at)
    _, _, value = data[at:line_end].partition(b":")
    try:
        return float(value)
    except ValueError:
        return None


class ExitClock:
    """Estimate when zombies exited, in seconds since the epoch.

    The kernel keeps no exit time. ``se.exec_start`` in ``/proc/PID/sched`` is
    the scheduler clock of the task's CPU at its last run, which for a zombie
    is its final switch-out in ``do_exit``. Each CPU's scheduler clock drifts
    from wall time by its own amount (steal and IRQ time on a VM), so we
    calibrate per CPU: move ourselves onto that CPU once and read our own
    ``se.exec_start`` (current to within a tick, 4 ms at HZ=250).

    Error measured here: a few milliseconds. ``/proc/PID/sched`` is a debug
    file, not a stable ABI: when it is missing or unreadable the estimate is
    None. One instance caches its calibration; make a new one per scan.
    """

    def __init__(self, root: str = "/proc") -> None:
        """Calibrate lazily against the procfs at *root*."""
        self.root = root
        self._offsets: dict[int, float | None] = {}

    def calibrate(self, cpus: Iterable[int]) -> None:
        """Calibrate against each of *cpus* now rather than on first use.

        Before a fork, so that the copies do not each move themselves onto
        the CPU the other is running on.
        """
        for cpu in cpus:
            self._offset(cpu)

    def _offset(self, cpu: int) -> float | None:
        if cpu not in self._offsets:
            self._offsets[cpu] = self._calibrate(cpu)
        return self._offsets[cpu]

    def _calibrate(self, cpu: int) -> float | None:
        try:
            allowed = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {cpu})
        except OSError:
            return None  # CPU offline or outside our cpuset
        try:
            own = _exec_start_ms(_read(f"{self.root}/self/sched", os.getpid(), _SCHED_HEAD))
            wall = time.time()
        except (NoSuchProcess, AccessDenied):
            return None
        finally:
            os.sched_setaffinity(0, allowed)
        return None if own is None else wall - own / 1000.0

    def exit_time(self, pid: int, start_ticks: int | None = None) -> float | None:
        """Return the estimated exit time of zombie *pid*, or None if unknown.

        Args:
            pid: the zombie.
            start_ticks: when given, the start time the caller saw for *pid*;
                the ``stat`` read after ``sched`` checks it, so an estimate
                for a reused PID is never returned.

        Raises:
            NoSuchProcess: *start_ticks* was given and *pid* is now another
                process (or gone).
        """
        try:
            sched: bytes | None = _read(f"{self.root}/{pid}/sched", pid, _SCHED_HEAD)
        except (NoSuchProcess, AccessDenied):
            sched = None  # no CONFIG_SCHED_DEBUG, hidden, or gone: the stat read tells
        try:
            fields = parse_stat(_read(f"{self.root}/{pid}/stat", pid))
        except (NoSuchProcess, StatParseError):
            if start_ticks is not None:
                raise NoSuchProcess(pid) from None
            return None
        except AccessDenied:
            return None
        if start_ticks is not None and fields.start_ticks != start_ticks:
            raise NoSuchProcess(pid, "PID reused since the scan")
        return None if sched is None else self.from_sched(sched, fields.cpu)

    def from_sched(self, sched: bytes, cpu: int | None) -> float | None:
        """Return the exit time a zombie's ``sched`` file gives, on the clock of *cpu*.

        The caller answers for identity: *sched* and *cpu* (field 39 of
        ``stat``) must be of the same zombie.
        """
        start = _exec_start_ms(sched)
        offset = self._offset(cpu) if cpu is not None else None
        if start is None or offset is None:
            return None
        return offset + start / 1000.0


# A stat file's inode number stands for its process only this long after the
# scan that took it: procfs numbers inodes from one 32-bit counter (shared
# with pipes and sockets), which cannot come round again within a minute.
_INODE_TRUST = 60.0


def _own_pid_ns(root: str) -> str | None:
    """Our ``ns/pid`` link (``pid:[INODE]``) if the procfs at *root* is our namespace's, else None.

    NSpid lists PIDs from the procfs's namespace down: ours has one entry
    exactly when we live in that namespace.
    """
    try:
        if len(_nspid(_read(f"{root}/self/status", os.getpid()), os.getpid())) != 1:
            return None
        return os.readlink(f"{root}/self/ns/pid")
    except (NoSuchProcess, AccessDenied, OSError):
        return None  # not a live procfs, or we are not in it


class ZombieReader:
    """Read what a census shows of each zombie of one scan: NSpid and time of death.

    At a thousand zombies, three small files each (``status``, ``sched``,
    ``stat``) cost a third as much as scanning 11,000 processes. This opens
    one (``sched``) per zombie of the procfs's own PID namespace:

    - NSpid: ``status`` only for a zombie outside the procfs's PID namespace,
      which its ``ns/pid`` link tells: ``readlink`` only formats the
      namespace's inode number (6 us here, against 9 for a ``stat``
      through the link and 13 for reading ``status``);
    - time of death: ``sched``, on the clock of the CPU the scan saw
      (:class:`ExitClock`, calibrated once per CPU);
    - identity, last (the PID may name another process since the scan): one
      ``stat`` of the ``stat`` file, whose inode must be the one the scan held
      open. Only when it differs (the kernel may have dropped the cached
      entry) is ``stat`` re-read: same start time, and still a zombie, which
      a process on a PID reused within the same clock tick is unlikely to be.
      A zombie that is still there now was there at the reads before.

    A zombie whose exact time of death the snapshot carries
    (``Snapshot.exit_times``, from an :class:`~undertaker.proc.EventTable`)
    needs no ``sched`` read: that time is returned, even without *ages*. One
    the table has read before (``Snapshot.zombie_reads``) needs no read at all.

    Make one per census: it caches the calibration.
    """

    def __init__(
        self, snapshot: Snapshot, *, ages: bool = True, clock: ExitClock | None = None
    ) -> None:
        """Prepare to read the zombies of *snapshot*; *ages*: estimate times of death.

        *clock*: an already calibrated :class:`ExitClock` of the same root.
        """
        self.root = snapshot.root
        self.clock = (clock or ExitClock(self.root)) if ages else None
        self._exact = snapshot.exit_times
        self._known = snapshot.zombie_reads
        self._keys = snapshot.zombie_keys
        self._scanned = snapshot.monotonic
        self._own_ns = _own_pid_ns(self.root)

    def read(self, proc: Process) -> tuple[tuple[int, ...], float | None] | None:
        """Return ``(nspid, exited_at)`` of zombie *proc*, or None if it is gone since the scan.

        ``exited_at`` is None when unknown (``--no-ages``, no ``sched`` file).
        """
        pid = proc.pid
        known = self._known.get(pid)
        if known is not None:  # read by an EventTable, which vouched for its identity
            nspid, estimate = known  # an exact time may have come since: it wins
            return nspid, self._exact.get(pid, estimate if self.clock is not None else None)
        base = f"{self.root}/{pid}"
        nspid = self._nspid(pid, base)
        key = self._keys.get(pid)
        exited_at = self._exact.get(pid)
        if exited_at is None and self.clock is not None:
            if key is None:  # a snapshot scan() did not make: the clock checks identity
                try:
                    return nspid, self.clock.exit_time(pid, proc.start_ticks)
                except NoSuchProcess:
                    return None
            try:
                exited_at = self.clock.from_sched(_read(f"{base}/sched", pid, _SCHED_HEAD), key.cpu)
            except (NoSuchProcess, AccessDenied):
                pass  # no CONFIG_SCHED_DEBUG, hidden, or gone (the check below tells)
        return (nspid, exited_at) if self._same(proc, base) else None

    def _nspid(self, pid: int, base: str) -> tuple[int, ...]:
        if self._own_ns is not None:
            try:
                if os.readlink(f"{base}/ns/pid") == self._own_ns:
                    return (pid,)
            except OSError:
                pass  # not ours to inspect, or gone: status tells, or the check drops it
        try:
            return read_nspid(pid, self.root) or (pid,)
        except (NoSuchProcess, AccessDenied):
            return (pid,)  # reaped since the scan (the check drops it), or hidden

    def _same(self, proc: Process, base: str) -> bool:
        key = self._keys.get(proc.pid)
        scanned = self._scanned
        if key is not None and scanned is not None and time.monotonic() - scanned < _INODE_TRUST:
            try:
                if os.stat(f"{base}/stat").st_ino == key.stat_inode:
                    return True
            except (FileNotFoundError, ProcessLookupError):
                return False
            except OSError:
                pass  # cannot tell this way: ask the start time
        try:
            fields = parse_stat(_read(f"{base}/stat", proc.pid))
        except (NoSuchProcess, AccessDenied, StatParseError):
            return False  # gone, or nothing to vouch for it
        # A zombie stays one until reaped; the start time alone has a 10 ms grain.
        return fields.start_ticks == proc.start_ticks and fields.state == proc.state
