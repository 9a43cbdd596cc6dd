"""Refusals decided before touching a parent: who it is, its state, our privileges."""

from __future__ import annotations

import os
import time

from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.proc._read import read_status
from undertaker.remedy._errors import NotPermitted, ParentGone, ParentRefused
from undertaker.remedy._target import Target, read_stat
from undertaker.wait import has_cap_sys_ptrace

YAMA = "/proc/sys/kernel/yama/ptrace_scope"
PF_KTHREAD = 0x00200000  # stat field 9, flags: a kernel thread
_FLAGS = 6  # index of field 9 in the tail after ") "


def has_capability(bit: int) -> bool:
    """Whether capability *bit* (``linux/capability.h``) is in our effective set."""
    with open("/proc/self/status", "rb") as own:
        for line in own:
            if line.startswith(b"CapEff:"):
                return bool(int(line[7:], 16) >> bit & 1)
    return os.geteuid() == 0


def yama_scope() -> int | None:
    """Yama's ``ptrace_scope`` (0 classic, 1 descendants only, 2 admin, 3 none), None if absent."""
    try:
        with open(YAMA, "rb") as scope:
            return int(scope.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def ptrace_requirement() -> str:
    """What ptrace needs here, naming Yama's setting and CAP_SYS_PTRACE."""
    scope = yama_scope()
    yama = "Yama is not enabled" if scope is None else f"Yama ptrace_scope is {scope} ({YAMA})"
    return f"needs CAP_SYS_PTRACE (run as root), or the parent's uid with ptrace_scope 0; {yama}"


def ancestors(pid: int | None = None) -> list[int]:
    """The PIDs from *pid* (default: ourselves) up to PID 1 of our namespace, inclusive."""
    chain = []
    current = os.getpid() if pid is None else pid
    while current > 0 and current not in chain:
        chain.append(current)
        try:
            current = read_stat(current).ppid
        except NoSuchProcess:
            break
    return chain


def is_kernel_thread(pid: int) -> bool:
    """Whether *pid* is a kernel thread (PF_KTHREAD in its stat flags)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        data = stat.read()
    tail = data[data.rfind(b")") + 2 :].split()
    return bool(int(tail[_FLAGS]) & PF_KTHREAD) if len(tail) > _FLAGS else False


def check_may_ptrace(parent: Target) -> None:
    """Refuse, before attaching, a parent the kernel would not let us trace.

    Raises:
        NotPermitted: no CAP_SYS_PTRACE and Yama or the uids forbid it.
    """
    scope = yama_scope()
    if has_cap_sys_ptrace():
        if scope == 3:
            raise NotPermitted(parent.pid, f"ptrace is disabled: {ptrace_requirement()}")
        return
    try:
        status = read_status(parent.pid)
    except AccessDenied:
        raise NotPermitted(parent.pid, f"ptrace not permitted: {ptrace_requirement()}") from None
    # Yama scope 1 lets us trace only our own descendants; 2 and 3, nobody.
    if scope is not None and scope >= 1 and (scope > 1 or os.getpid() not in ancestors(parent.pid)):
        raise NotPermitted(parent.pid, f"ptrace not permitted: {ptrace_requirement()}")
    if set(status.uids[:3]) != {os.geteuid()}:
        raise NotPermitted(
            parent.pid, f"ptrace not permitted (another user's process): {ptrace_requirement()}"
        )


def check_parent(parent: Target, d_timeout: float = 1.0) -> str:
    """Refuse a parent we must not trace; return the thread to attach to.

    A parent in ``D`` is waited for up to *d_timeout* seconds: it cannot
    stop until it leaves that state, and a tracer that gave up while it
    was there would freeze it later.

    Raises:
        ParentRefused: ourselves, PID 1 of our namespace, traced, seccomp-filtered,
            another architecture, or still in D after *d_timeout*.
        ParentGone: it exited.
    """
    if parent.pid == os.getpid():
        raise ParentRefused(parent.pid, "the parent is undertaker itself")
    if parent.pid == 1:
        raise ParentRefused(parent.pid, "the parent is PID 1 (init): it must reap its own children")
    try:
        status = read_status(parent.pid)
    except NoSuchProcess:
        raise ParentGone(parent.pid, "the parent exited") from None
    if status.tracer_pid:
        raise ParentRefused(
            parent.pid, f"the parent is already traced by PID {status.tracer_pid} (a debugger?)"
        )
    if status.seccomp:  # strict mode kills on wait4; a filter may (it is not read)
        mode = "strict mode" if status.seccomp == 1 else "a filter"
        raise ParentRefused(
            parent.pid, f"the parent runs under seccomp ({mode}), which could kill it for wait4"
        )
    deadline = time.monotonic() + d_timeout
    while read_stat(parent.pid).state == "D":
        if time.monotonic() >= deadline:
            raise ParentRefused(
                parent.pid, f"the parent stayed in uninterruptible sleep (D) for {d_timeout} s"
            )
        time.sleep(0.01)
    return _live_thread(parent.pid)


def _live_thread(pid: int) -> str:
    # A zombie leader cannot stop; any live thread of the group can wait for
    # the group's children.
    if read_stat(pid).state != "Z":
        return str(pid)
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat:
                data = stat.read()
        except FileNotFoundError:
            continue
        if data[data.rfind(b")") + 2 :][:1] not in (b"Z", b"X"):
            return tid
    raise ParentGone(pid, "every thread of the parent has exited")
