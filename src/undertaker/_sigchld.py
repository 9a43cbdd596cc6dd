"""Installing a SIGCHLD wake-up handler without trampling anyone else's.

``signal.getsignal()`` answers None for a handler installed before Python
started (an embedding program) and keeps answering SIG_DFL after a C
extension installs one; either way replacing it would silently break that
code. The kernel's own view is in ``/proc/self/status``.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

from undertaker._errors import UndertakerError
from undertaker.proc import SIGCHLD_BIT, read_status

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    Handler = Callable[[int, FrameType | None], object] | int | None

DEFAULT = "default"
IGNORED = "ignored"
CAUGHT = "caught"


def kernel_disposition() -> str:
    """SIGCHLD's disposition for this process: DEFAULT, IGNORED or CAUGHT."""
    status = read_status(os.getpid())
    if status.sig_ign & SIGCHLD_BIT:
        return IGNORED
    if status.sig_cgt & SIGCHLD_BIT:
        return CAUGHT
    return DEFAULT


def disposition() -> str:
    """SIGCHLD's disposition, asking the kernel whenever Python may not know.

    Python's answer is None for a handler set before it started, and stays
    SIG_DFL when C code installs one later: in both cases the kernel knows.
    """
    current = signal.getsignal(signal.SIGCHLD)
    if current == signal.SIG_IGN:
        return IGNORED
    if callable(current):
        return CAUGHT
    return kernel_disposition()


def install(mode: bool | str, handler: Callable[[int, FrameType | None], None]) -> Handler | bool:
    """Install *handler* as the Reaper's *mode* says; return the previous one, or False.

    ``"auto"`` installs only from the main thread over the default disposition;
    True installs over a Python handler too (the caller chains to it).

    Raises:
        UndertakerError: True, but SIGCHLD is ignored (no status survives), caught
            by a handler from C (nothing to chain to), or not the main thread.
    """
    if mode is False:
        return False
    state = disposition()
    previous = signal.getsignal(signal.SIGCHLD)
    in_main = threading.current_thread() is threading.main_thread()
    if mode is True and state == IGNORED:
        raise UndertakerError(
            "SIGCHLD is SIG_IGN: the kernel reaps every child itself and no status "
            "survives; restore SIG_DFL first"
        )
    if mode is True and state == CAUGHT and not callable(previous):
        raise UndertakerError(
            "SIGCHLD has a handler installed outside Python, which the Reaper cannot "
            "chain to; use sigchld='auto' or False"
        )
    if mode == "auto" and (not in_main or state != DEFAULT):
        return False  # never replace a handler silently: rely on pidfds and polling
    if not in_main:
        raise UndertakerError("sigchld=True needs the main thread (Python's rule for handlers)")
    signal.signal(signal.SIGCHLD, handler)
    return previous


def restore(handler: Callable[[int, FrameType | None], None], previous: Handler) -> bool:
    """Put *previous* back if *handler* is still installed; False if we cannot (a thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False  # only the main thread may; the handler goes on chaining
    if signal.getsignal(signal.SIGCHLD) == handler:
        signal.signal(signal.SIGCHLD, previous if previous is not None else signal.SIG_DFL)
    return True


def warn_if_replaced(handler: Callable[[int, FrameType | None], None]) -> bool:
    """Warn (once per caller) if other code replaced *handler*; True if it did."""
    if signal.getsignal(signal.SIGCHLD) == handler:
        return False
    import warnings  # noqa: PLC0415  (only on this rare path)

    warnings.warn(
        "another SIGCHLD handler replaced the Reaper's: without its thread it now "
        "reaps only in manage() and reap()",
        RuntimeWarning,
        stacklevel=5,
    )
    return True
