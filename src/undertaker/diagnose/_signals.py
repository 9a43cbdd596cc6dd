"""Signal masks as names, and what a process does with SIGCHLD."""

from __future__ import annotations

from undertaker.wait import signal_name

SIGCHLD = 17
_SIGCHLD_BIT = 1 << (SIGCHLD - 1)  # signal N is bit N-1 of the masks in /proc/PID/status
_NSIG = 64
_GLIBC_RESERVED = (32, 33)  # real-time signals NPTL keeps for itself (cancellation, setxid)

# The stable names of a SIGCHLD disposition (docs/json.md).
DEFAULT = "default"
CAUGHT = "caught"
IGNORED = "ignored"


def mask_names(mask: int) -> list[str]:
    """Name every signal in a ``/proc/PID/status`` mask, real-time ones included.

    >>> mask_names(0x10002)
    ['SIGINT', 'SIGCHLD']
    >>> mask_names(1 << 33)
    ['SIGRTMIN']
    """
    return [
        f"SIG{signum}" if signum in _GLIBC_RESERVED else signal_name(signum)
        for signum in range(1, _NSIG + 1)
        if mask & (1 << (signum - 1))
    ]


def has_sigchld(mask: int) -> bool:
    """Whether SIGCHLD is in *mask*."""
    return bool(mask & _SIGCHLD_BIT)


def sigchld_disposition(sig_ign: int, sig_cgt: int) -> str:
    """``default``, ``caught`` or ``ignored``, from the SigIgn and SigCgt masks."""
    if has_sigchld(sig_cgt):
        return CAUGHT
    if has_sigchld(sig_ign):
        return IGNORED
    return DEFAULT
