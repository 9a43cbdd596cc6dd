"""``undertaker doctor``: the machine's own health for reaping, as findings.

Each check reads a few facts (through :mod:`undertaker.proc`) and hands them
to a pure ``judge_*`` function that says what they mean and what to do.
Levels: ``ok``; ``note`` (worth knowing, nothing to do); ``action`` (act).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from undertaker._control_errors import NotSupported
from undertaker._errors import AccessDenied, NoSuchProcess
from undertaker.diagnose._signals import IGNORED, has_sigchld, sigchld_disposition
from undertaker.prctl import is_subreaper
from undertaker.proc import parse_status, read_status
from undertaker.proc._detail import read_stat_bytes, waited_children
from undertaker.proc._system import cgroup_pids, loadavg_tasks, pid_max, read_small, threads_max
from undertaker.wait import has_cap_sys_ptrace

if TYPE_CHECKING:
    from collections.abc import Sequence

    from undertaker.proc import Snapshot, Status

OK = "ok"
NOTE = "note"
ACTION = "action"
_PRESSURE = 0.8  # share of a PID limit in use above which fork failures are near


class Finding(NamedTuple):
    """One fact about the machine, what it means, and what to do."""

    check: str  # stable name (docs/json.md)
    level: str  # ok, note, action
    fact: str
    advice: str


def judge_self(pid: int, subreaper: bool | None) -> Finding:
    """Whether orphans of our children come back to us."""
    if pid == 1:
        return Finding("self", OK, "we are PID 1 of our namespace: orphans come to us", "")
    if subreaper:
        return Finding("self", OK, "we are a child subreaper: our orphans come to us", "")
    return Finding(
        "self",
        NOTE,
        "not PID 1 and not a child subreaper: orphans of our children go to this "
        "namespace's PID 1 (or the nearest subreaper above us)",
        "to adopt them, run under `undertaker run --` or call undertaker.become_subreaper()",
    )


def judge_init(status: Status | None, zombies: int, waited: bool | None = None) -> Finding:
    """Whether this PID namespace's PID 1 reaps: its SIGCHLD disposition and zombie count.

    *waited*: the kernel's count of children it has waited for is not zero
    (None: unreadable). A PID 1 that never waited may be no init at all.
    """
    if status is None:
        return Finding("init", NOTE, "PID 1 of this namespace cannot be read", "run as root")
    disposition = sigchld_disposition(status.sig_ign, status.sig_cgt)
    how = f"SIGCHLD {disposition}" + (", blocked" if has_sigchld(status.sig_blk) else "")
    fact = f"PID 1 is {status.name} ({how}), holding {zombies} zombie(s)"
    if zombies:
        return Finding(
            "init",
            ACTION,
            fact,
            "PID 1 does not reap: run `undertaker why 1`; in a container use "
            '`docker run --init`, ENTRYPOINT ["undertaker", "run", "--"], or '
            "shareProcessNamespace: true",
        )
    if disposition == IGNORED:
        return Finding("init", OK, f"{fact}; the kernel reaps its children", "")
    if waited is False:
        return Finding(
            "init",
            NOTE,
            f"{fact}; it has never waited for a child",
            "if it is no init, an orphan that exits here stays a zombie: run the entry point "
            'under ENTRYPOINT ["undertaker", "run", "--"] or `docker run --init`',
        )
    return Finding("init", OK, fact + ("; it has waited for children" if waited else ""), "")


def judge_limit(name: str, used: int | None, limit: int | None) -> Finding:
    """How close PID or task use is to one limit."""
    if used is None or not limit:
        return Finding(name, NOTE, f"{name}: not readable here", "")
    fact = f"{name}: {used} of {limit} in use ({100 * used / limit:.1f}%)"
    if used >= _PRESSURE * limit:
        return Finding(
            name,
            ACTION,
            fact,
            "fork will soon fail with EAGAIN: reap zombies (`undertaker why`) or raise the limit",
        )
    return Finding(name, OK, fact, "")


def judge_ptrace(scope: int | None, capable: bool) -> Finding:
    """Whether ``undertaker reap --method ptrace`` may attach here."""
    yama = "Yama not built" if scope is None else f"Yama ptrace_scope {scope}"
    if scope == 3:
        return Finding(
            "ptrace",
            NOTE,
            f"{yama}: no process may ptrace",
            "reaping inside a live parent is impossible; fix or restart parents",
        )
    if capable:
        return Finding("ptrace", OK, f"{yama}; we hold CAP_SYS_PTRACE", "")
    if scope == 2:
        advice = "run `undertaker reap --method ptrace` as root"
    else:
        advice = "ptrace works on your own processes only; run as root for others"
    return Finding("ptrace", NOTE, f"{yama}; no CAP_SYS_PTRACE", advice)


def judge_seccomp(who: str, mode: int | None) -> Finding:
    """Whether a seccomp filter may refuse (or kill on) wait, ptrace or pidfd calls."""
    if mode is None:
        return Finding(f"seccomp-{who}", NOTE, f"seccomp of {who}: not readable", "")
    if mode == 0:
        return Finding(f"seccomp-{who}", OK, f"no seccomp filter on {who}", "")
    return Finding(
        f"seccomp-{who}",
        NOTE,
        f"{who} runs under seccomp ({'strict' if mode == 1 else 'filter'})",
        "injected wait4 or ptrace may be refused, and a KILL filter ends the process",
    )


def judge_zombie_parents(filtered: Sequence[tuple[int, str]], *, complete: bool = True) -> Finding:
    """Whether parents holding zombies run under seccomp, which also filters injected calls.

    *complete*: every process and every parent's status was readable; else
    none found is no all-clear.
    """
    check = "seccomp-zombie-parents"
    if not filtered and not complete:
        return Finding(
            check,
            NOTE,
            "no parent holding zombies seen under seccomp, but some processes could not be read",
            "run as root to see them all",
        )
    if not filtered:
        return Finding(check, OK, "no parent holding zombies runs under seccomp", "")
    named = ", ".join(f"{pid} ({name})" for pid, name in filtered[:10])
    more = f" and {len(filtered) - 10} more" if len(filtered) > 10 else ""
    return Finding(
        check,
        NOTE,
        f"{len(filtered)} parent(s) holding zombies run under seccomp: {named}{more}",
        "`undertaker reap --method ptrace` makes them call wait4, which their filter may "
        "refuse (or kill them for); `undertaker why PID` names the other fixes",
    )


def _filtered_parents(snapshot: Snapshot) -> tuple[list[tuple[int, str]], bool]:
    """The parents holding zombies under seccomp, and whether every one could be read."""
    holders = sorted({p.ppid for p in snapshot.processes.values() if p.is_zombie and p.ppid})
    filtered = []
    complete = True
    for pid in holders:
        try:
            status = read_status(pid, snapshot.root)
        except NoSuchProcess:
            continue
        except AccessDenied:
            complete = False
            continue
        if status.seccomp:
            filtered.append((pid, status.name))
    return filtered, complete


def _pidfd() -> Finding:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError) as err:
        return Finding(
            "pidfd",
            NOTE,
            f"pidfd_open unavailable ({err})",
            "waits fall back to polling; PID reuse is checked by start time instead",
        )
    return Finding("pidfd", OK, "pidfd_open works (Linux 5.3+)", "")


def _yama_scope() -> int | None:
    try:
        return int(read_small("/proc/sys/kernel/yama/ptrace_scope"))
    except (OSError, ValueError):
        return None


def _seccomp_of(pid: int, root: str) -> int | None:
    try:
        return read_status(pid, root).seccomp
    except (NoSuchProcess, AccessDenied):
        return None


def _own_seccomp(root: str) -> tuple[int | None, int | None]:
    """The seccomp modes of undertaker and of its parent, found through ``ROOT/self``.

    Never by ``os.getpid()``: a procfs of another PID namespace numbers
    processes its own way, and our PID there may be another process's.
    """
    try:
        own = parse_status(read_small(f"{root}/self/status"))
    except (OSError, ValueError):
        return None, None
    return own.seccomp, _seccomp_of(own.ppid, root) if own.ppid else None


def judge_view(notes: Sequence[str]) -> list[Finding]:
    """What the scan could not see (hidepid, another PID namespace): the counts' caveats."""
    return [Finding("view", NOTE, note, "") for note in notes]


def examine(
    snapshot: Snapshot,
    *,
    pids_used: int | None = None,
    view: Sequence[str] = (),
    incomplete: bool = False,
) -> list[Finding]:
    """Run every check against the live system (and *snapshot*, a scan of it).

    Args:
        snapshot: a scan of the system.
        pids_used: PIDs in use, when a better count than the scan's is known
            (the kernel's task count under hidepid).
        view: caveats on what the scan saw, one finding each.
        incomplete: the scan missed processes (hidepid, other users'), so
            finding none of something proves nothing.
    """
    root = snapshot.root
    try:
        subreaper: bool | None = is_subreaper()
    except (NotSupported, AccessDenied):
        subreaper = None
    try:
        init: Status | None = read_status(1, root)
        faults, ticks = waited_children(read_stat_bytes(1, root))
        waited: bool | None = faults > 0 or ticks > 0
    except (NoSuchProcess, AccessDenied):
        init, waited = None, None
    init_zombies = sum(1 for p in snapshot.children(1) if p.is_zombie)
    tasks = loadavg_tasks(root)
    findings = [
        *judge_view(view),
        judge_self(os.getpid(), subreaper),
        judge_init(init, init_zombies, waited),
        judge_limit("pid_max", pids_used or snapshot.pids_used, pid_max(root)),
        judge_limit("threads-max", tasks, threads_max(root)),
    ]
    own_seccomp, parent_seccomp = _own_seccomp(root)
    filtered, complete = _filtered_parents(snapshot)
    pids = cgroup_pids(root)
    if pids is not None:
        findings.append(judge_limit(f"pids cgroup {pids[2]}", pids[0], pids[1]))
    findings += [
        judge_ptrace(_yama_scope(), has_cap_sys_ptrace()),
        _pidfd(),
        judge_seccomp("undertaker", own_seccomp),
        judge_seccomp("its parent", parent_seccomp),
        judge_zombie_parents(filtered, complete=complete and not incomplete),
    ]
    return findings
