"""The two ``prctl(2)`` calls the init needs, through ctypes.

ctypes costs about 3 ms to import, so it is loaded only when a call is made:
as PID 1 without ``--pdeathsig`` the init never pays for it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import ctypes

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc: ctypes.CDLL | None = None


def _prctl(option: int, arg: object) -> None:
    global _libc  # noqa: PLW0603  (one lazily loaded handle, not a cache of data)
    import ctypes  # noqa: PLC0415  (import cost paid only when needed)

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def set_child_subreaper() -> None:
    """Become a child subreaper: orphaned descendants are re-parented to us.

    Raises:
        OSError: the kernel refused (before Linux 3.4, or a seccomp filter).
    """
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_parent_death_signal(signum: int) -> None:
    """Ask for *signum* when our parent exits (``PR_SET_PDEATHSIG``).

    Raises:
        OSError: the kernel refused.
    """
    _prctl(PR_SET_PDEATHSIG, signum)
