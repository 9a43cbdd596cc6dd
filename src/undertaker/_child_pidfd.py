"""A pidfd for a new child that no other code can take from us: the child opens it.

Opening the pidfd in the parent once ``Popen`` returns leaves a window: the
child may exit and be reaped by other code (a SIGCHLD handler calling
``waitpid(-1)``, a thread in ``wait()``, SIGCHLD set to ``SIG_IGN``) before
``pidfd_open`` runs, which then fails, or names a newer process that got the
PID. Python 3.10-3.13 offer no ``clone3(CLONE_PIDFD)`` and ``Popen`` no pidfd,
so we open it where the right process is certain: in the child, between fork
and exec, as ``pidfd_open(getpid())``. The child sends the descriptor over a
Unix socket (``SCM_RIGHTS``), where it waits until we read it after ``Popen``
returns. The price: any ``preexec_fn`` makes ``subprocess`` fork instead of
vfork (about 1.7 ms more per spawn for a small interpreter, see docs/library.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
from typing import TYPE_CHECKING, Any

from undertaker.prctl import PR_SET_PDEATHSIG, prctl_function

if TYPE_CHECKING:
    from collections.abc import Callable


class PidfdChannel:
    """One spawn's socket pair: the child's end sends, ours receives."""

    def __init__(self) -> None:
        """Create the pair (close-on-exec: the exec'd program never sees it)."""
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def preexec(self, death_signal: int | None) -> Callable[[], None]:
        """The function ``Popen`` runs in the child before exec.

        Everything it calls is resolved here: the child must not import or
        load libraries (another thread may have held a lock at fork time).
        """
        theirs = self._theirs
        send_fds = socket.send_fds
        prctl = None if death_signal is None else prctl_function()
        parent = os.getpid()
        number = 0 if death_signal is None else int(death_signal)

        def preexec() -> None:
            # The pidfd first: the death signal below may end this process.
            try:
                pidfd = os.pidfd_open(os.getpid())
            except OSError as err:
                theirs.send(str(err.errno).encode())  # so the parent can say why
                raise
            send_fds(theirs, [b"pidfd"], [pidfd])  # closed at exec (close-on-exec)
            if prctl is not None:
                if prctl(PR_SET_PDEATHSIG, number, 0, 0, 0) != 0:
                    raise OSError("prctl(PR_SET_PDEATHSIG) failed")
                if os.getppid() != parent:
                    # The parent died before prctl took effect: nobody will signal us.
                    os.kill(os.getpid(), number)

        return preexec

    def receive(self) -> int | None:
        """After ``Popen`` returned: the child's pidfd (close-on-exec), None if none came."""
        flags = socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(self._ours, 64, 1, flags)
        except BlockingIOError:
            return None
        return fds[0] if fds else None

    def child_error(self) -> OSError | None:
        """After ``Popen`` failed in our preexec: why the child could not open its pidfd."""
        try:
            message = self._ours.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        if not message.isdigit():
            return None
        number = int(message)
        return OSError(number, f"pidfd_open in the new child: {os.strerror(number)}")

    def close(self) -> None:
        """Close both ends (the child's copy dies with its exec)."""
        self._ours.close()
        self._theirs.close()


def popen_with_pidfd(
    argv: list[Any], death_signal: int | None, **options: Any
) -> tuple[subprocess.Popen[bytes], int]:
    """``Popen(argv, **options)`` and the child's own pidfd (see the module docstring).

    Raises:
        OSError: the child could not open its pidfd (``EMFILE``...).
        ChildProcessError: the child was killed before its exec.
    """
    channel = PidfdChannel()
    try:
        try:
            popen = subprocess.Popen(argv, preexec_fn=channel.preexec(death_signal), **options)  # noqa: PLW1509
        except subprocess.SubprocessError:
            error = channel.child_error()
            if error is None:
                raise
            raise error from None
        pidfd = channel.receive()
    finally:
        channel.close()
    if pidfd is None:
        # Killed inside our preexec, before it sent the pidfd: Popen takes a
        # child that dies before exec for one that exec'd. It is dead: reap it.
        popen.wait()
        raise ChildProcessError(f"the new child (pid {popen.pid}) was killed before its exec")
    return popen, pidfd
