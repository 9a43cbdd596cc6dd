"""Names of the system calls a process that does not reap is usually blocked in.

``/proc/PID/syscall`` gives a number, whose meaning depends on the
architecture. Only calls a process can sleep in are listed; any other
number is shown as ``syscall N``.
"""

from __future__ import annotations

import os

_X86_64 = {
    0: "read",
    1: "write",
    7: "poll",
    23: "select",
    34: "pause",
    35: "nanosleep",
    43: "accept",
    45: "recvfrom",
    47: "recvmsg",
    56: "clone",
    58: "vfork",
    61: "wait4",
    72: "fcntl",
    73: "flock",
    128: "rt_sigtimedwait",
    130: "rt_sigsuspend",
    202: "futex",
    219: "restart_syscall",
    230: "clock_nanosleep",
    232: "epoll_wait",
    247: "waitid",
    270: "pselect6",
    271: "ppoll",
    281: "epoll_pwait",
    288: "accept4",
    299: "recvmmsg",
    435: "clone3",
    441: "epoll_pwait2",
}

# asm-generic numbering, used by aarch64.
_AARCH64 = {
    22: "epoll_pwait",
    25: "fcntl",
    32: "flock",
    63: "read",
    64: "write",
    72: "pselect6",
    73: "ppoll",
    95: "waitid",
    98: "futex",
    101: "nanosleep",
    115: "clock_nanosleep",
    128: "restart_syscall",
    133: "rt_sigsuspend",
    137: "rt_sigtimedwait",
    202: "accept",
    207: "recvfrom",
    212: "recvmsg",
    220: "clone",
    242: "accept4",
    243: "recvmmsg",
    260: "wait4",
    435: "clone3",
    441: "epoll_pwait2",
}

_TABLES = {"x86_64": _X86_64, "aarch64": _AARCH64}

# Calls in which a process is already waiting for its children.
WAITING_FOR_CHILDREN = frozenset({"wait4", "waitid"})


def syscall_name(number: int, machine: str | None = None) -> str:
    """Name syscall *number* on *machine* (``uname -m``; ours by default).

    >>> syscall_name(61, "x86_64"), syscall_name(260, "aarch64"), syscall_name(9999, "x86_64")
    ('wait4', 'wait4', 'syscall 9999')
    """
    table = _TABLES.get(machine or os.uname().machine, {})
    return table.get(number, f"syscall {number}")
