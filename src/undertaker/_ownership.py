"""Who will wait for a child? The evidence the cooperative ``Reaper`` looks at.

The kernel hands each exit status to exactly one waiter, and it does not
record who forked a child or who means to wait for it. So the reaper
gathers evidence that *someone else* owns a zombie child, and reaps only
when there is none. Each function here reads one kind of evidence from
``/proc/self``; ``docs/library.md`` lists where the evidence falls short.
"""

from __future__ import annotations

import os
import sys

# wait4 and waitid syscall numbers by machine; a thread blocked in one of them
# shows it in /proc/self/task/TID/syscall. Unknown machines skip this evidence.
_WAIT_SYSCALLS: dict[str, tuple[int, int]] = {
    "x86_64": (61, 247),
    "aarch64": (260, 95),
    "riscv64": (260, 95),
    "loongarch64": (260, 95),
    "ppc64le": (114, 272),
    "s390x": (114, 281),
}
_P_ALL = 0
_P_PID = 1


def can_list_children(proc_self: str = "/proc/self") -> bool:
    """Whether the kernel has ``CONFIG_PROC_CHILDREN`` (the per-thread children files)."""
    return os.path.exists(f"{proc_self}/task/{os.getpid()}/children")


def children_by_thread(proc_self: str = "/proc/self") -> dict[int, int]:
    """Map each child of this process to the thread that is its parent.

    The kernel files a child under the thread that forked it; adopted orphans
    go to the first live thread (normally the main thread).
    """
    found: dict[int, int] = {}
    for tid in os.listdir(f"{proc_self}/task"):
        try:
            with open(f"{proc_self}/task/{tid}/children", "rb") as listing:
                data = listing.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended since the listing
        for pid in data.split():
            found[int(pid)] = int(tid)
    return found


def adopter_thread(proc_self: str = "/proc/self") -> int:
    """Return the thread that orphans are re-parented to: the first live one.

    That is the main thread unless it called ``pthread_exit`` (then it shows
    as a zombie and the kernel picks the next thread in the list).
    """
    first = 0
    for tid in os.listdir(f"{proc_self}/task"):
        first = first or int(tid)
        try:
            with open(f"{proc_self}/task/{tid}/stat", "rb") as stat:
                data = stat.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended since the listing
        if data[data.rfind(b")") + 2 :][:1] not in (b"Z", b"X"):
            return int(tid)
    return first


def _signed32(text: str) -> int:
    value = int(text, 16) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class Claims:
    """Evidence that other code of this process will collect some exit statuses."""

    __slots__ = ("multiprocessing", "pidfds", "wait_any", "waited")

    def __init__(
        self, waited: set[int], wait_any: bool, pidfds: set[int], multiprocessing: set[int]
    ) -> None:
        """Hold what ``collect_claims`` found."""
        self.waited = waited  # a thread is blocked waiting for these
        self.wait_any = wait_any  # a thread is blocked in wait(-1): every zombie is its
        self.pidfds = pidfds  # someone holds a pidfd on these
        self.multiprocessing = multiprocessing  # live multiprocessing children

    def covers(self, pid: int) -> bool:
        """Whether other code will (or may) collect *pid*'s status."""
        return (
            self.wait_any or pid in self.waited or pid in self.pidfds or pid in self.multiprocessing
        )


def blocked_waits(proc_self: str = "/proc/self") -> tuple[set[int], bool]:
    """PIDs that threads of ours are blocked in ``wait4``/``waitid`` for, and any-child waits."""
    numbers = _WAIT_SYSCALLS.get(os.uname().machine)
    pids: set[int] = set()
    if numbers is None:
        return pids, False
    wait4, waitid = numbers
    wait_any = False
    for tid in os.listdir(f"{proc_self}/task"):
        try:
            with open(f"{proc_self}/task/{tid}/syscall") as syscall:
                fields = syscall.read().split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # thread gone, or the file is hidden from us
        if len(fields) < 3 or not fields[0].isdigit():
            continue  # "running": not in a system call
        number = int(fields[0])
        if number == wait4:
            target = _signed32(fields[1])
            if target > 0:
                pids.add(target)
            else:
                wait_any = True  # -1: any child; 0 or -PGID: a process group
        elif number == waitid:
            idtype, ident = int(fields[1], 16), _signed32(fields[2])
            if idtype == _P_PID:
                pids.add(ident)
            elif idtype != 3:  # P_PIDFD waiters also hold the pidfd: seen there
                wait_any = True
    return pids, wait_any


def pidfd_targets(exclude: set[int], proc_self: str = "/proc/self") -> set[int]:
    """PIDs that pidfds in our descriptor table refer to (ours in *exclude* left out).

    asyncio's ``PidfdChildWatcher`` (the Linux default since Python 3.12) and
    ``undertaker.Child`` hold one for every child they will reap.
    """
    pids: set[int] = set()
    for name in os.listdir(f"{proc_self}/fd"):
        fd = int(name)
        if fd in exclude:
            continue
        try:
            if "pidfd" not in os.readlink(f"{proc_self}/fd/{name}"):
                continue
            with open(f"{proc_self}/fdinfo/{name}", "rb") as info:
                data = info.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # closed since the listing
        for line in data.splitlines():
            if line.startswith(b"Pid:"):
                pid = int(line.split()[1])
                if pid > 0:
                    pids.add(pid)
    return pids


def multiprocessing_children() -> set[int]:
    """PIDs of ``multiprocessing`` children not yet joined (only if it is loaded).

    ``multiprocessing`` keeps them in a private set; ``active_children()``
    would reap, so we read the set instead.
    """
    module = sys.modules.get("multiprocessing.process")
    children = getattr(module, "_children", None)
    if not children:
        return set()
    for _ in range(5):
        try:
            processes = list(children)
            break
        except RuntimeError:
            continue  # the set changed size under us: another thread started or joined one
    else:
        return set()
    pids = set()
    for process in processes:
        popen = getattr(process, "_popen", None)
        pid = getattr(popen, "pid", None)
        if isinstance(pid, int):
            pids.add(pid)
    return pids


def collect_claims(exclude_fds: set[int]) -> Claims:
    """Gather all the evidence at once (a few /proc reads per thread and per fd)."""
    waited, wait_any = blocked_waits()
    return Claims(waited, wait_any, pidfd_targets(exclude_fds), multiprocessing_children())
