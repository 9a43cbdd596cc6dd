"""Become a daemon the classic way, without leaving a zombie behind.

The double fork: the first child calls ``setsid`` (leaving our terminal and
process group) and forks again, then exits at once; the grandchild is not a
session leader, so it can never acquire a controlling terminal, and it is
adopted by init (or by the nearest child subreaper). The original process
reaps the first child itself, so no zombie is left, and learns through a
pipe whether the daemon came up (pid file written) before it exits.

Call it early, before starting threads: ``fork`` copies only the calling
thread, and Python 3.12+ warns about forking a multi-threaded process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import TYPE_CHECKING, NoReturn

from undertaker._control_errors import DaemonError

if TYPE_CHECKING:
    from collections.abc import Iterable

    StrPath = str | os.PathLike[str]


def _running_pid(path: str) -> int | None:
    """The PID in an existing pid file if that process still exists, else None."""
    try:
        with open(path, "rb") as existing:
            pid = int(existing.read().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None  # no file, or garbage: stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # exists, owned by someone else
    return pid


def write_pid_file(path: StrPath, pid: int | None = None) -> None:
    """Write *pid* (default: ours) to *path* atomically, refusing if a live process owns it.

    The content is written to a temporary file in the same directory, synced,
    and then linked into place, so readers never see a partial file. A file
    naming a process that no longer exists is stale and replaced.

    Race: two daemons that both find the same *stale* file can both replace
    it; the last rename wins. (A fresh file is created with ``link``, which
    fails if another daemon got there first.) A PID in the file may also
    have been reused by an unrelated process, which then looks alive.

    Args:
        path: the pid file.
        pid: the PID to record.

    Raises:
        DaemonError: the file names a process that is still running.
        OSError: the directory is not writable.
    """
    target = os.fspath(path)
    pid = os.getpid() if pid is None else pid
    directory = os.path.dirname(os.path.abspath(target))
    temporary = os.path.join(directory, f".{os.path.basename(target)}.{pid}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{pid}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        try:
            os.link(temporary, target)
        except FileExistsError:
            owner = _running_pid(target)
            if owner is not None and owner != pid:
                raise DaemonError(f"already running (pid {owner}, pid file {target})") from None
            os.replace(temporary, target)  # stale: replace atomically
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _remove_pid_file(path: str, pid: int) -> None:
    """At exit, remove the pid file if it still names us."""
    if os.getpid() == pid and _running_pid(path) == pid:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _redirect(fd: int, path: StrPath, flags: int) -> None:
    target = os.open(path, flags | os.O_CLOEXEC, 0o644)
    os.dup2(target, fd)  # dup2 clears close-on-exec on the copy
    os.close(target)


def _parent_side(first: int, report_r: int, exit_parent: bool) -> int:
    """In the original process: reap the first child, read the report."""
    os.waitpid(first, 0)  # it exits right after forking: this is why no zombie is left
    chunks = []
    while chunk := os.read(report_r, 4096):
        chunks.append(chunk)
    os.close(report_r)
    report = b"".join(chunks).decode("utf-8", "replace")
    kind, _, detail = report.partition(" ")
    if kind == "ok":
        if exit_parent:
            os._exit(0)
        return int(detail)
    message = detail or "the daemon died before it was ready"
    if exit_parent:
        sys.stderr.write(f"daemonize: {message}\n")
        sys.stderr.flush()
        os._exit(1)
    raise DaemonError(message)


def _fail(report_w: int, message: str) -> NoReturn:
    with contextlib.suppress(OSError):
        os.write(report_w, f"error {message}".encode())
    os._exit(1)


def daemonize(
    *,
    pid_file: StrPath | None = None,
    workdir: StrPath = "/",
    umask: int = 0o022,
    stdin: StrPath = os.devnull,
    stdout: StrPath = os.devnull,
    stderr: StrPath = os.devnull,
    keep_fds: Iterable[int] = (),
    exit_parent: bool = True,
) -> int:
    """Detach into a daemon: double fork, ``setsid``, ``umask``, ``chdir``, fds, pid file.

    Returns in the daemon with 0, like ``fork`` in a child. In the original
    process it exits with status 0 once the daemon is ready (status 1 and a
    message on stderr if the daemon failed), or, with ``exit_parent=False``,
    returns the daemon's PID there.

    Relative paths (*pid_file*, *stdin*, *stdout*, *stderr*) are resolved
    against the caller's working directory before the first fork, not
    against *workdir*.

    Args:
        pid_file: written atomically by the daemon before we report success,
            and removed at the daemon's exit if it still holds its PID.
        workdir: the daemon's working directory, so it pins no mount point.
        umask: the daemon's file mode creation mask.
        stdin: what the daemon's standard input reads (default /dev/null).
        stdout: where standard output goes, appended (default /dev/null).
        stderr: where standard error goes, appended (default /dev/null).
        keep_fds: descriptors above 2 to keep open; all others are closed.
        exit_parent: exit the original process when the daemon is ready.

    Returns:
        0 in the daemon; the daemon's PID in the original process
        (``exit_parent=False``).

    Raises:
        DaemonError: the daemon could not start (pid file held by a running
            process, bad directory); raised in the original process.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or buffered output would be written twice
    # Relative paths mean the caller's directory, not *workdir*: resolve them
    # before the daemon changes directory.
    pid_path = None if pid_file is None else os.path.abspath(os.fspath(pid_file))
    stdin, stdout, stderr = (os.path.abspath(os.fspath(p)) for p in (stdin, stdout, stderr))
    keep = {int(fd) for fd in keep_fds}
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    first = os.fork()
    if first > 0:
        os.close(report_w)
        return _parent_side(first, report_r, exit_parent)
    # First child: leave the session, fork the daemon, exit at once.
    os.close(report_r)
    try:
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
    except OSError as err:
        _fail(report_w, f"fork/setsid failed: {err}")
    # The daemon.
    try:
        os.umask(umask)
        os.chdir(workdir)
        _redirect(0, stdin, os.O_RDONLY)
        _redirect(1, stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        _redirect(2, stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        _close_other_fds(keep | {report_w})
        if pid_path is not None:
            write_pid_file(pid_path)
            atexit.register(_remove_pid_file, pid_path, os.getpid())
    except (OSError, DaemonError) as err:
        _fail(report_w, str(err))
    os.write(report_w, f"ok {os.getpid()}".encode())
    os.close(report_w)
    return 0


def _close_other_fds(keep: set[int]) -> None:
    """Close every descriptor above 2 except *keep* (close_range under the hood)."""
    try:
        limit = os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        limit = 1 << 20
    start = 3
    for fd in sorted(keep):
        if fd >= start:
            os.closerange(start, fd)
            start = fd + 1
    os.closerange(start, max(limit, start))
