"""Start the main child: its own process group, the terminal, the inherited signals.

The child is made with ``fork`` and ``exec`` rather than ``posix_spawn``
because it must take the terminal's foreground (``tcsetpgrp``) before it
runs, or an interactive program could read the terminal and be stopped by
SIGTTIN before we hand it over. An exec failure comes back through a
close-on-exec pipe, so the init knows 127 from 126 before it reports.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from undertaker.init._signals import InheritedSignals


class ExecFailed(OSError):
    """The command could not be executed; ``exit_code`` is what a shell returns."""

    @property
    def exit_code(self) -> int:
        """127 when the command is not found, 126 otherwise (shell convention)."""
        return 127 if self.errno in (errno.ENOENT, errno.ENOTDIR) else 126


class Child:
    """The main child: its PID, process group and whether it owns the terminal."""

    __slots__ = ("pgid", "pid", "tty")

    def __init__(self, pid: int, tty: int | None) -> None:
        """Record a started child (its process group has its PID)."""
        self.pid = pid
        self.pgid = pid
        self.tty = tty


def foreground_tty() -> int | None:
    """The terminal on stdin if the init's group is its foreground, else None.

    Only then may the child take the terminal over: run in the background
    (``&``), stealing the foreground would freeze the user's shell.
    """
    try:
        if os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:  # ENOTTY: no terminal; EBADF: stdin closed; ENXIO: hung up
        return None
    return None


def spawn(command: list[str], signals: InheritedSignals, environ: dict[str, str]) -> Child:
    """Fork and exec *command*; return once it runs (or raise if it cannot).

    Raises:
        ExecFailed: execvp failed (the child has been reaped already), or the
            command name is empty.
    """
    if not command[0]:  # execvp("") would fail with ValueError; a shell says "not found"
        raise ExecFailed(errno.ENOENT, "command not found", command[0])
    tty = foreground_tty()
    env = dict(environ)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child; it leaves through exec or _exit)
        _child(command, signals, env, tty=tty, pipe=(read_end, write_end))
    os.close(write_end)
    # Also set in the parent, so the group exists before we forward anything.
    try:
        os.setpgid(pid, pid)
    except (PermissionError, ProcessLookupError):  # child exec'd already, or died
        pass
    report = b""
    while chunk := os.read(read_end, 64):
        report += chunk
    os.close(read_end)
    if report:
        os.waitpid(pid, 0)
        code = int(report)
        raise ExecFailed(code, os.strerror(code), command[0])
    return Child(pid, tty)


def _child(
    command: list[str],
    signals: InheritedSignals,
    env: dict[str, str],
    *,
    tty: int | None,
    pipe: tuple[int, int],
) -> None:
    """In the forked child: set up, exec; on failure report errno and _exit."""
    read_end, write_end = pipe
    code = errno.EINVAL
    try:
        os.close(read_end)
        os.setpgid(0, 0)
        if tty is not None:
            try:
                os.tcsetpgrp(tty, os.getpgrp())  # SIGTTOU is still blocked here
            except OSError:  # the terminal went away: run without it
                pass
        if "LISTEN_PID" in env:  # socket activation: the sockets are for the child
            env["LISTEN_PID"] = str(os.getpid())
        signals.restore_in_child()
        os.execvpe(command[0], command, env)  # noqa: S606  (no shell: argv as given)
    except OSError as err:
        code = err.errno or errno.EINVAL
    finally:
        try:
            os.write(write_end, str(code).encode())
        finally:
            os._exit(127)
