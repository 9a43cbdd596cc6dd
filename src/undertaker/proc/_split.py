"""Read a large process table on two CPUs: a forked helper takes half.

Most of a scan is the kernel's work behind ``open``/``read``/``close`` of
each ``/proc/PID/stat``, and a thread cannot share it: every one of those
calls hands the GIL over, and two threads doing so in turn ran no faster
than one. A forked copy of this process has its own GIL. It reads every
other name of the listing, parses it exactly as the scan does, and sends the
records back through a pipe as plain tuples (``marshal``: no code runs on
load). Whatever goes wrong on its side, the scan reads that half itself.

With the table, each side reads what the census would read of the zombies
in its half (NSpid, time of death), so those reads run on two CPUs too.

The fork is safe only when this process runs one thread: a copy forked
beside other threads may inherit a lock one of them held. So the split is
taken only then, only with a second CPU to run on, and only for tables
large enough to repay the fork (about a millisecond).
"""

from __future__ import annotations

import marshal
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from undertaker.proc._scan import Process, ZombieKey

    # By PID: what ZombieReader.read returned for each zombie, (nspid, exited_at).
    Reads = dict[int, tuple[tuple[int, ...], float | None]]
    # processes, zombie keys, unreadable, vanished, zombie reads
    Table = tuple[dict[int, Process], dict[int, ZombieKey], int, int, Reads]

# Below this many entries the fork and the transfer cost more than they save.
MIN_ENTRIES = 3000


def worth_splitting(entries: int) -> bool:
    """Whether a table of *entries* names should be read by two processes."""
    if entries < MIN_ENTRIES:
        return False
    try:
        if len(os.sched_getaffinity(0)) < 2:
            return False
        # Threads started by C code count too: the kernel's list has them all.
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def read_split(
    names: list[str],
    read: Callable[[list[str]], Table],
    rebuild: Callable[[Table, list[tuple[object, ...]], list[tuple[object, ...]]], None],
) -> Table:
    """Read *names* with ``read``, half of them in a forked helper.

    Args:
        names: the entries of the procfs listing.
        read: the scan's loop over a list of names.
        rebuild: adds the helper's plain tuples (processes, then zombie keys
            as ``(pid, *key)``) to the table read here.
    """
    theirs, mine = names[1::2], names[0::2]
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return read(names)
    if pid == 0:  # the helper: never returns into the caller
        try:
            os.close(read_end)
            # A ^C meant for the scan must not end the helper mid-write
            # with a traceback; the caller reaps or kills it.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _send(write_end, read(theirs))
        finally:
            os._exit(0)
    os.close(write_end)
    pidfd = _pidfd(pid)
    data = None
    try:
        table = read(mine)
        data = _receive(read_end)
    finally:
        os.close(read_end)
        _reap(pid, pidfd, finished=data is not None)
    try:
        # Our own forked copy wrote it, through a pipe only we hold.
        procs, keys, unreadable, vanished, reads = marshal.loads(data)  # noqa: S302
    except (EOFError, ValueError, TypeError):
        return _merge(table, read(theirs))  # the helper failed: read its half here
    rebuild(table, procs, keys)
    table[4].update(reads)
    return table[0], table[1], table[2] + unreadable, table[3] + vanished, table[4]


def _send(fd: int, table: Table) -> None:
    procs, keys, unreadable, vanished, reads = table
    blob = marshal.dumps(
        (
            [tuple(p) for p in procs.values()],
            [(pid, *key) for pid, key in keys.items()],
            unreadable,
            vanished,
            reads,
        )
    )
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None  # a kernel before 5.3; or the helper failed and was reaped already


def _reap(pid: int, pidfd: int | None, *, finished: bool) -> None:
    """Collect the helper; stop it first if the scan ended before it did (^C).

    A SIGCHLD handler of the program may reap the helper before we do, and
    its PID be reused: the signal goes through the pidfd opened at the fork.
    """
    try:
        if not finished and pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass  # SIGCHLD ignored, or the program's handler reaped it: fine
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _merge(table: Table, other: Table) -> Table:
    table[0].update(other[0])
    table[1].update(other[1])
    table[4].update(other[4])
    return table[0], table[1], table[2] + other[2], table[3] + other[3], table[4]
