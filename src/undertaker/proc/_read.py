"""On-demand reads of one process: status, command line, identity, exit time.

Every function takes the procfs root, so the same code serves the live
system and captured trees.
"""

from __future__ import annotations

import os
import time

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.proc._stat import StatParseError, parse_stat
from undertaker.proc._status import Status, StatusParseError, parse_status


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
            chunk = os.read(fd, 65536)
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
    data = _read(f"{root}/{pid}/status", pid)
    start = data.find(b"\nNSpid:")
    if start < 0:
        return (pid,)
    end = data.find(b"\n", start + 1)
    try:
        return tuple(int(p) for p in data[start + 7 : end if end > 0 else None].split())
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
            own = _exec_start_ms(_read(f"{self.root}/self/sched", os.getpid()))
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
            sched: bytes | None = _read(f"{self.root}/{pid}/sched", pid)
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
        if sched is None:
            return None
        start = _exec_start_ms(sched)
        offset = self._offset(fields.cpu) if fields.cpu is not None else None
        if start is None or offset is None:
            return None
        return offset + start / 1000.0
