"""Signal names, the init's blocked set, and the inherited state the child gets back.

Built on the C module ``_signal`` rather than ``signal``: the latter wraps
every constant in an ``enum`` and costs about 4 ms at start-up, a sixth of
the init's whole budget.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal as _signal  # the same functions, with stubs
    from collections.abc import Callable
else:
    import _signal

SIGCHLD: int = _signal.SIGCHLD
SIGCONT: int = _signal.SIGCONT
SIGHUP: int = _signal.SIGHUP
SIGINT: int = _signal.SIGINT
SIGKILL: int = _signal.SIGKILL
SIGQUIT: int = _signal.SIGQUIT
SIGSTOP: int = _signal.SIGSTOP
SIGTERM: int = _signal.SIGTERM
SIGTSTP: int = _signal.SIGTSTP
SIGTTIN: int = _signal.SIGTTIN
SIGTTOU: int = _signal.SIGTTOU
SIGRTMIN: int = _signal.SIGRTMIN
SIGRTMAX: int = _signal.SIGRTMAX
# The kernel's real-time signals start at 32; glibc keeps the first ones (32 and
# 33 on Linux) for thread cancellation and setxid, and moves SIGRTMIN past them.
# Nothing outside the C library may send or wait for them.
_FIRST_RESERVED = 32

# Python itself sets these at start-up (SIGINT gets a handler, PIPE and XFSZ
# are ignored), so what the init's own parent chose is lost; the child gets
# the defaults back, as subprocess's restore_signals does.
_PYTHON_CHANGED = (_signal.SIGINT, _signal.SIGPIPE, _signal.SIGXFSZ)

# Signals whose arrival at the init starts the drain (HUP is left out: many
# daemons take it to mean "reload").
TERMINATING = frozenset({SIGTERM, SIGINT, SIGQUIT})

_NAMES: dict[str, int] = {
    name[3:]: value
    for name, value in vars(_signal).items()
    if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(value, int)
}
_NAMES.pop("RTMIN", None)
_NAMES.pop("RTMAX", None)


class SignalError(ValueError):
    """A signal name or number that does not exist or cannot be used here."""


def parse_signal(text: str, allow_zero: bool = False) -> int:
    """Parse ``TERM``, ``SIGTERM``, ``sigterm``, ``15`` or ``RTMIN+2`` into a number.

    Raises:
        SignalError: unknown name, or a number outside 1..SIGRTMAX (0 only with
            *allow_zero*, which means "drop").
    """
    word = text.strip().upper()
    word = word.removeprefix("SIG")
    if _is_number(word):
        number = int(word)
    elif word.startswith(("RTMIN", "RTMAX")):
        number = _parse_realtime(word, text)
    elif word in _NAMES:
        number = _NAMES[word]
    else:
        raise SignalError(f"unknown signal {text!r}")
    if number == 0 and allow_zero:
        return 0
    if not 1 <= number <= SIGRTMAX:
        raise SignalError(f"signal number out of range: {text!r} (1..{SIGRTMAX})")
    if _FIRST_RESERVED <= number < SIGRTMIN:
        raise SignalError(
            f"signal {number} is reserved by the C library (real-time signals "
            f"are RTMIN..RTMAX, {SIGRTMIN}..{SIGRTMAX})"
        )
    return number


def _parse_realtime(word: str, text: str) -> int:
    base = SIGRTMIN if word.startswith("RTMIN") else SIGRTMAX
    rest = word[5:]
    if not rest:
        return base
    sign, digits = rest[:1], rest[1:]
    if sign not in "+-" or not _is_number(digits):
        raise SignalError(f"unknown signal {text!r}")
    number = base + int(digits) if sign == "+" else base - int(digits)
    if not SIGRTMIN <= number <= SIGRTMAX:
        raise SignalError(f"real-time signal out of range: {text!r}")
    return number


def _is_number(word: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true, but ``int("²")`` fails."""
    return word.isascii() and word.isdigit()


class InheritedSignals:
    """The signal mask and dispositions the init started with, and its blocked set.

    The init blocks every signal it can (all but SIGKILL and SIGSTOP, the
    synchronous ones included: a real fault is forced through a block by the
    kernel anyway) and collects them with ``sigtimedwait``. Blocked signals are
    queued even for PID 1, whose default-action signals are otherwise dropped.
    """

    def __init__(self) -> None:
        """Block everything; remember what to give back to the child."""
        self.caught: frozenset[int] = frozenset(
            _signal.valid_signals() - {_signal.SIGKILL, _signal.SIGSTOP}
        )
        self.ignored: frozenset[int] = frozenset(
            sig for sig in self.caught if _signal.getsignal(sig) is _signal.SIG_IGN
        )
        self.mask: set[int] = _signal.pthread_sigmask(_signal.SIG_BLOCK, self.caught)
        # An ignored SIGCHLD makes the kernel reap our children for us and we
        # would never learn the main child's status: undo it, for the init only.
        if SIGCHLD in self.ignored:
            _signal.signal(SIGCHLD, _signal.SIG_DFL)

    def restore_in_child(self) -> None:
        """Between fork and exec: give the child the init's inherited signal state."""
        for sig in (*_PYTHON_CHANGED, SIGCHLD):
            keep_ignored = sig in self.ignored and sig in (SIGINT, SIGCHLD)
            _signal.signal(sig, _signal.SIG_IGN if keep_ignored else _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, self.mask)

    def wait(self, timeout: float) -> int | None:
        """Wait up to *timeout* seconds for one signal; return its number.

        None when the time is up, and for a SIGCHLD from the kernel (``si_code``
        is a ``CLD_*`` value, > 0), which only means "reap". A SIGCHLD that a
        user sent (``kill``, ``sigqueue``: ``si_code`` <= 0) is returned, to be
        forwarded like any other signal.
        """
        info = _signal.sigtimedwait(self.caught, max(timeout, 0.0))
        if info is None or (info.si_signo == SIGCHLD and info.si_code > 0):
            return None
        return int(info.si_signo)


def send(pid: int, signum: int, refused: Callable[[int], None]) -> bool:
    """``kill(pid, signum)``; False when the target is gone (ESRCH) or refused it (EPERM).

    EPERM means a process of another user (a setuid program, or one a root
    ``docker exec`` left behind for a non-root init): *refused* is told, and
    the init carries on. As PID 1, an exception here would end the container.
    """
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        refused(pid)
        return False
    return True
