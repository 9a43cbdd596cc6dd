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
import functools
import gc
import io
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from undertaker._control_errors import DaemonError
from undertaker._errors import AccessDenied, NoSuchProcess

if TYPE_CHECKING:
    from collections.abc import Iterable

    StrPath = str | os.PathLike[str]


# Slack when comparing a process's start with the pid file's mtime: btime is in
# whole seconds, start times in clock ticks, and some file systems round mtimes.
_START_SLACK = 2.0


def _running_pid(path: str) -> int | None:
    """The PID in an existing pid file if that process still runs, else None.

    Dead means: no such process, a zombie (exited, not yet reaped by its
    parent), or a process that started after the file was written, so it
    cannot be the one that wrote it: its PID was reused (after a reboot, or in
    a new container where PIDs start again from 1).
    """
    try:
        with open(path, "rb") as existing:
            written = os.fstat(existing.fileno()).st_mtime
            pid = int(existing.read().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None  # no file, or garbage: stale
    if pid <= 0:
        return None
    return pid if _runs_since(pid, written) else None


def _runs_since(pid: int, written: float) -> bool:
    """Whether *pid* is alive, not a zombie, and started no later than *written*."""
    from undertaker.proc._read import _read  # noqa: PLC0415  (only when a pid file exists)
    from undertaker.proc._stat import StatParseError, parse_stat  # noqa: PLC0415
    from undertaker.proc._system import boot_time, clock_ticks  # noqa: PLC0415

    try:
        stat = parse_stat(_read(f"/proc/{pid}/stat", pid))
        started = boot_time() + stat.start_ticks / clock_ticks()
    except NoSuchProcess:
        return False
    except (AccessDenied, StatParseError, OSError, ValueError):
        return _exists(pid)  # no usable /proc: existence is all we can check
    return stat.state not in "ZX" and started <= written + _START_SLACK


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def write_pid_file(path: StrPath, pid: int | None = None) -> None:
    """Write *pid* (default: ours) to *path* atomically, refusing if a live process owns it.

    The content is written to a temporary file in the same directory (a
    random name, so a temporary left by a crash never blocks a later start),
    synced, and then linked into place, so readers never see a partial file.
    A file is stale, and replaced, when the process it names no longer runs:
    it is gone, a zombie, or a newer process that reused the PID (it started
    after the file was written).

    Race: two daemons that both find the same *stale* file can both replace
    it; the last rename wins. (A fresh file is created with ``link``, which
    fails if another daemon got there first.) A PID reused by a process that
    started within 2 seconds after the file was written still looks alive.

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
    temporary, fd = _create_temporary(directory, os.path.basename(target))
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


def _create_temporary(directory: str, name: str) -> tuple[str, int]:
    """A new file ``.NAME.RANDOM.tmp`` in *directory*: its path and an fd open for writing.

    Not named by PID: PIDs repeat (in containers, after reboots), and a
    temporary left behind by a crash would then block every later start.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for attempt in range(16):
        temporary = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            return temporary, os.open(temporary, flags, 0o644)
        except FileExistsError:
            if attempt == 15:
                raise
    raise AssertionError("unreachable")


def _remove_pid_file(path: str, pid: int) -> None:
    """At exit, remove the pid file if it still names us."""
    if os.getpid() == pid and _running_pid(path) == pid:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _die_of_sigterm(path: str, pid: int, _signum: int, _frame: Any) -> None:
    """SIGTERM in a daemon that had the default action: remove the pid file, then die of it.

    Dying of the signal again (not ``exit``) keeps what the default action
    meant: the status says "killed by SIGTERM", and no Python cleanup runs.
    """
    _remove_pid_file(path, pid)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _redirect(fd: int, path: StrPath, flags: int) -> None:
    target = os.open(path, flags | os.O_CLOEXEC, 0o644)
    if target == fd:  # *fd* was closed, and open() took its number
        os.set_inheritable(fd, True)  # noqa: FBT003  (positional-only)
        return
    os.dup2(target, fd)  # dup2 clears close-on-exec on the copy
    os.close(target)


def _python_files() -> list[Any]:
    """Every file and socket object, after flushing the files: fork copies unwritten buffers.

    Found through the garbage collector, which tracks them all.
    """
    kinds: tuple[type, ...] = (io.IOBase,)
    if "socket" in sys.modules:
        kinds += (sys.modules["socket"].socket,)
    found = [obj for obj in gc.get_objects() if isinstance(obj, kinds)]
    # sys.stdout and sys.stderr may be any object with a flush(), or None.
    streams = [s for s in (sys.stdout, sys.stderr) if not isinstance(s, io.IOBase)]
    for obj in [*streams, *(f for f in found if isinstance(f, io.IOBase))]:
        with contextlib.suppress(Exception):
            obj.flush()  # written once, here, not once per process
    return found


def _close_python_files(files: list[Any], keep: set[int]) -> None:
    """Close, through their objects, the files above 2 that the daemon does not keep.

    Closed behind a live object, a descriptor number is soon reused by the
    next ``open()``, and the old object's next write (or its flush at exit)
    lands in that unrelated file. Closed through the object, a later use
    raises ``ValueError: I/O operation on closed file`` instead.
    """
    for obj in files:
        try:
            fd = obj.fileno()
        except (OSError, ValueError):
            continue  # closed already (by its wrapper), or not backed by a descriptor
        if fd > 2 and fd not in keep:
            with contextlib.suppress(Exception):
                obj.close()


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
            and removed at the daemon's exit if it still holds its PID, also
            when SIGTERM (left at its default action) kills the daemon.
        workdir: the daemon's working directory, so it pins no mount point.
        umask: the daemon's file mode creation mask.
        stdin: what the daemon's standard input reads (default /dev/null).
        stdout: where standard output goes, appended (default /dev/null).
        stderr: where standard error goes, appended (default /dev/null).
        keep_fds: descriptors above 2 to keep open; all others are closed,
            those of live Python file and socket objects through the object.
        exit_parent: exit the original process when the daemon is ready.

    Returns:
        0 in the daemon; the daemon's PID in the original process
        (``exit_parent=False``).

    Raises:
        DaemonError: the daemon could not start (pid file held by a running
            process, bad directory); raised in the original process.
        TypeError: an argument has the wrong type (checked before forking).
        ValueError: *umask* or a descriptor in *keep_fds* is out of range.
    """
    # Checked here: a bad argument found in the daemon could only say "died".
    keep = _check_arguments(umask, keep_fds, exit_parent)
    workdir = os.fspath(workdir)
    # Relative paths mean the caller's directory, not *workdir*: resolve them
    # before the daemon changes directory.
    pid_path = None if pid_file is None else os.path.abspath(os.fspath(pid_file))
    stdin, stdout, stderr = (os.path.abspath(os.fspath(p)) for p in (stdin, stdout, stderr))
    files = _python_files()  # flushed (sys.stdout too), or output would be written twice
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
        _close_python_files(files, keep)
        del files
        _close_other_fds(keep | {report_w})
        if pid_path is not None:
            write_pid_file(pid_path)
            atexit.register(_remove_pid_file, pid_path, os.getpid())
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                # The default action runs no atexit: remove the file on the way out.
                handler = functools.partial(_die_of_sigterm, pid_path, os.getpid())
                signal.signal(signal.SIGTERM, handler)
    except Exception as err:  # noqa: BLE001  (whatever it is, the caller must hear of it)
        _fail(report_w, str(err) or type(err).__name__)
    os.write(report_w, f"ok {os.getpid()}".encode())
    os.close(report_w)
    return 0


def _check_arguments(umask: object, keep_fds: Iterable[object], exit_parent: object) -> set[int]:
    """Refuse bad arguments in the caller, before any fork; return the fds to keep."""
    if not isinstance(umask, int) or isinstance(umask, bool):
        raise TypeError(f"umask must be an int such as 0o022, not {type(umask).__name__}")
    if not 0 <= umask <= 0o777:
        raise ValueError(f"umask must be within 0o000..0o777, not {umask:#o}")
    if not isinstance(exit_parent, bool):
        raise TypeError(f"exit_parent must be a bool, not {type(exit_parent).__name__}")
    keep = set()
    for fd in keep_fds:
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(f"keep_fds must hold ints, not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"keep_fds must hold descriptors (0 or more), not {fd}")
        keep.add(fd)
    return keep


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
