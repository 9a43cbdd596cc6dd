"""Process controls the kernel offers only through ``prctl(2)``, called via ctypes.

Python has no ``prctl`` binding, so we call libc's through ``ctypes``; ctypes
is loaded on first use, not at import, to keep ``import undertaker`` light.

Two controls matter for zombie-free programs:

* *child subreaper* (Linux 3.4): orphaned descendants are re-parented to us
  instead of to PID 1, so we can reap them. Not inherited by ``fork``, kept
  across ``execve``.
* *parent-death signal* (Linux 2.1.57): the kernel sends us a signal when the
  **thread** that forked us exits. Cleared in the child of ``fork``, and by
  ``execve`` of a set-user-ID or privileged binary.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys

from undertaker._control_errors import NotSupported
from undertaker._errors import AccessDenied

TYPE_CHECKING = False  # not typing's (3 ms): keeps this module cheap for the init's start-up
if TYPE_CHECKING:
    from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


@functools.cache
def prctl_function() -> Callable[[int, int, int, int, int], int]:
    """Return libc's ``prctl`` as a callable taking five integers.

    Resolved once and cached, so a ``preexec_fn`` running between ``fork`` and
    ``exec`` can call it without loading anything.

    Raises:
        NotSupported: not Linux, or the C library has no ``prctl``.
    """
    if not sys.platform.startswith("linux"):
        raise NotSupported("prctl", f"Linux only (this is {sys.platform})")
    import ctypes  # noqa: PLC0415  (loaded on first use: the package root stays light)

    libc = ctypes.CDLL(None, use_errno=True)
    try:
        function = libc.prctl
    except AttributeError:
        raise NotSupported("prctl", "the C library has no prctl symbol") from None
    function.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    function.restype = ctypes.c_int
    return function


def _check(result: int, what: str) -> int:
    """Turn a -1 from prctl into the error the caller can act on."""
    if result != -1:
        return result
    import ctypes  # noqa: PLC0415  (already loaded by prctl_function)

    code = ctypes.get_errno()
    if code == errno.EINVAL:
        raise NotSupported(what, f"the kernel ({os.uname().release}) rejected the prctl option")
    if code == errno.EPERM:
        raise AccessDenied(None, what, "a prctl the seccomp policy or LSM allows")
    raise OSError(code, f"{what}: {os.strerror(code)}")


def _get_int(option: int, what: str) -> int:
    import ctypes  # noqa: PLC0415  (already loaded by prctl_function)

    value = ctypes.c_int(0)
    _check(prctl_function()(option, ctypes.addressof(value), 0, 0, 0), what)
    return value.value


def become_subreaper(enable: bool = True) -> None:
    """Make this process a child subreaper (or stop being one).

    Orphaned descendants are then re-parented to this process instead of to
    PID 1, and it must reap them (see ``Reaper``). Zombies of orphans already
    adopted stay ours after ``enable=False``.

    Args:
        enable: True to set the flag, False to clear it.

    Raises:
        NotSupported: not Linux, or a kernel older than 3.4.
        AccessDenied: a seccomp filter or security module refused the call.
    """
    _check(
        prctl_function()(PR_SET_CHILD_SUBREAPER, int(enable), 0, 0, 0),
        "PR_SET_CHILD_SUBREAPER",
    )


def is_subreaper() -> bool:
    """Whether this process is a child subreaper.

    Raises:
        NotSupported: not Linux, or a kernel older than 3.4.
        AccessDenied: a seccomp filter or security module refused the call.
    """
    return _get_int(PR_GET_CHILD_SUBREAPER, "PR_GET_CHILD_SUBREAPER") != 0


def _valid_signal(sig: int) -> int:
    number = int(sig)
    if number != 0 and number not in signal.valid_signals():
        raise ValueError(f"not a signal number: {sig}")
    return number


def set_parent_death_signal(sig: int | None) -> None:
    """Ask the kernel to send *sig* to this process when its parent exits.

    Race: the signal fires when the *thread* that forked us exits, not the
    whole parent process, so a child started from a short-lived thread dies
    with that thread. If the parent died before this call, nothing will ever
    fire: compare ``os.getppid()`` with the parent's PID afterwards (``spawn``
    does this for you).

    Args:
        sig: the signal number, or None or 0 to clear it.

    Raises:
        ValueError: *sig* is not a valid signal number.
        NotSupported: not Linux.
        AccessDenied: a seccomp filter or security module refused the call.
    """
    number = 0 if sig is None else _valid_signal(sig)
    _check(prctl_function()(PR_SET_PDEATHSIG, number, 0, 0, 0), "PR_SET_PDEATHSIG")


def parent_death_signal() -> signal.Signals | int | None:
    """Return the parent-death signal of this process, or None when unset.

    Returns:
        A ``signal.Signals`` member (a plain int for real-time signals), or None.

    Raises:
        NotSupported: not Linux.
        AccessDenied: a seccomp filter or security module refused the call.
    """
    number = _get_int(PR_GET_PDEATHSIG, "PR_GET_PDEATHSIG")
    if number == 0:
        return None
    try:
        return signal.Signals(number)
    except ValueError:
        return number
