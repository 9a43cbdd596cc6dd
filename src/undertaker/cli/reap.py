"""``undertaker reap``: clean zombies up by acting on their parent, safely.

Methods, least disruptive first: ``nudge`` (SIGCHLD to a parent with a
handler), ``ptrace`` (the live parent calls ``wait4`` for its zombies) and
``kill-parent`` (SIGTERM, ``--grace``, SIGKILL; init or a subreaper adopts
and reaps). ``auto`` tries them in that order up to ``--max``. Everything but
``nudge`` is a dry run without ``--yes``. Targets are identified by PID and
start time, held by pidfds from the check to the action.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import signal
import sys
from typing import TYPE_CHECKING

from undertaker._errors import NoSuchProcess
from undertaker.cli._common import EXIT_ERROR, EXIT_OK, pid_arg
from undertaker.cli._exit import (
    EXIT_NOT_PERMITTED,
    EXIT_NOT_ZOMBIE,
    EXIT_PARENT_GONE,
    EXIT_PARENT_REFUSED,
    EXIT_REMAINING,
    EXIT_ZOMBIE_LEADER,
)
from undertaker.cli._reap_log import ActionLog, LogUnwritable
from undertaker.remedy import (
    LiveZombieLeader,
    NotAZombie,
    NotPermitted,
    ParentGone,
    ParentRefused,
    ReapInterrupted,
    ReapRefused,
    plan_for,
)
from undertaker.remedy._target import Target, Zombie, open_parent
from undertaker.remedy.signals import (
    check_killable,
    check_may_signal,
    check_protected,
    has_sigchld_handler,
    kill_parent,
    nudge,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from undertaker.remedy import PtraceResult

METHODS = ("nudge", "ptrace", "kill-parent")
_MAX_FILES = 1 << 20  # enough for any zombie storm, far below the kernel's nr_open
NUDGE_WAIT = 0.5  # seconds a nudged parent gets to reap
CAVEAT = (
    "note: the parent loses these exit statuses: its own wait for a reaped child now fails "
    "with ECHILD (Python's subprocess then reports returncode 0)"
)
_CODES: list[tuple[type[ReapRefused], int]] = [
    (NotPermitted, EXIT_NOT_PERMITTED),
    (LiveZombieLeader, EXIT_ZOMBIE_LEADER),
    (NotAZombie, EXIT_NOT_ZOMBIE),
    (ParentGone, EXIT_PARENT_GONE),
    (ParentRefused, EXIT_PARENT_REFUSED),
]


def exit_code(err: ReapRefused) -> int:
    """The exit status of a refusal."""
    return next((code for kind, code in _CODES if isinstance(err, kind)), EXIT_ERROR)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"not a number of seconds (0..3600): {text!r}")
    return value


def add_parser(subs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``reap`` and its options."""
    sub = subs.add_parser(
        "reap",
        help="clean zombies up: nudge their parent, reap inside it via ptrace, or end it",
        description="Clean zombies up without rebooting. nudge sends SIGCHLD to a parent "
        "with a handler; ptrace makes the live parent call wait4 for its zombies (it "
        "keeps running); kill-parent ends the parent so that init or a subreaper "
        "adopts and reaps them. Everything but nudge is a dry run without --yes.",
        epilog="Exit status: 0 done (or, dry run, would be done), 2 bad input, 4 not "
        "permitted (Yama ptrace_scope, CAP_SYS_PTRACE), 5 not a zombie, 6 parent gone, "
        "7 live zombie leader, 8 parent refused (traced, protected, PID 1, in D), "
        "9 zombies remain after the methods allowed.",
    )
    sub.add_argument("zombies", nargs="*", type=pid_arg, metavar="ZPID", help="zombies to reap")
    sub.add_argument("--parent", type=pid_arg, metavar="PPID", help="every zombie of PPID")
    sub.add_argument("--all", action="store_true", help="every zombie of every parent")
    sub.add_argument(
        "--method",
        choices=(*METHODS, "auto"),
        default="auto",
        help="how (default auto: least disruptive first, up to --max)",
    )
    sub.add_argument(
        "--max",
        choices=METHODS,
        dest="max_method",
        help="the most disruptive method auto may use (default ptrace)",
    )
    sub.add_argument("--yes", "-y", action="store_true", help="act (default: a dry run)")
    sub.add_argument("--log", metavar="FILE", help="append every action to FILE as JSON lines")
    sub.add_argument(
        "--grace",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="kill-parent: seconds between SIGTERM and SIGKILL (default 5)",
    )
    sub.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="PID|COMM",
        help="never act on this parent (PID or command name; repeatable)",
    )


def _refused(err: ReapRefused, codes: list[int]) -> None:
    print(f"undertaker reap: {err}", file=sys.stderr)
    codes.append(exit_code(err))


def _select(args: argparse.Namespace, codes: list[int]) -> dict[int, list[Zombie]]:
    """The zombies to treat, grouped by parent, each opened (identity and pidfd)."""
    if args.zombies:
        pids = list(dict.fromkeys(args.zombies))
        explicit = True
    else:
        from undertaker.proc import scan  # noqa: PLC0415  (not needed for named zombies)

        snapshot = scan()
        if args.parent is not None and args.parent not in snapshot.processes:
            _refused(ParentGone(args.parent, "no such process"), codes)
            return {}
        found = snapshot.zombies
        pids = [z.pid for z in found if args.all or z.ppid == args.parent]
        explicit = False
    groups: dict[int, list[Zombie]] = {}
    for pid in pids:
        try:
            zombie = Zombie.open(pid)
        except NotAZombie:
            if explicit:
                raise
            continue  # reaped since the scan: nothing left to do
        groups.setdefault(zombie.ppid, []).append(zombie)
    return groups


def _describe(zombie: Zombie) -> str:
    return f"  {zombie.pid:>7}  {zombie.status or 'exit status hidden (run as root)'}"


def _do_nudge(
    parent: Target, zombies: list[Zombie], args: argparse.Namespace, log: ActionLog
) -> list[Zombie]:
    check_protected(parent, _protect_set(args.protect))  # harmless, but "never act" is never
    if not has_sigchld_handler(parent.pid):  # it acts without --yes
        print("  nudge: skipped: the parent has no SIGCHLD handler")
        return zombies
    gone = nudge(parent, zombies, NUDGE_WAIT)
    print(f"  nudge: sent SIGCHLD; the parent reaped {len(gone)} of {len(zombies)}")
    log.write("nudge", parent, zombies, evidence={"sigchld_handler": True}, reaped=gone)
    return [z for z in zombies if z.pid not in gone]


def _do_ptrace(
    parent: Target, zombies: list[Zombie], args: argparse.Namespace, log: ActionLog
) -> list[Zombie]:
    check_protected(parent, _protect_set(args.protect))
    plan = plan_for(parent, zombies)
    if not args.yes:
        print(
            f"  ptrace: would make {parent.pid} call wait4 for {len(zombies)} zombie(s), "
            "stopping it about 5 ms at a time (dry run; --yes to act)"
        )
        log.write("ptrace", parent, zombies, dry_run=True)
        return []
    try:
        result = plan.execute()
    except ReapInterrupted as stopped:  # ^C: what was reaped is said and logged all the same
        _report_ptrace(parent, zombies, stopped.result, log, interrupted=True)
        raise
    return _report_ptrace(parent, zombies, result, log)


def _report_ptrace(
    parent: Target,
    zombies: list[Zombie],
    result: PtraceResult,
    log: ActionLog,
    *,
    interrupted: bool = False,
) -> list[Zombie]:
    reaped = set(result.reaped)
    longest = max(result.stops, default=0.0) * 1000
    print(
        f"  ptrace: reaped {len(reaped)} of {len(zombies)} in {len(result.stops)} stop(s), "
        f"longest {longest:.1f} ms"
    )
    left = [o for o in result.outcomes if not o.reaped]
    for outcome in left if not interrupted else ():
        print(f"  {outcome.pid:>7}  not reaped: {outcome.detail}")
    if interrupted:
        print(f"  ptrace: interrupted; {len(left)} zombie(s) left as they were")
    if reaped:
        print(f"  {CAVEAT}")
    log.write(
        "ptrace",
        parent,
        zombies,
        dry_run=False,
        reaped=sorted(reaped),
        stops_ms=[round(s * 1000, 3) for s in result.stops],
        failures={o.pid: o.detail for o in result.outcomes if not o.reaped},
        **({"interrupted": True} if interrupted else {}),
    )
    return [z for z in zombies if z.pid not in reaped]


def _live_children(parent: Target) -> int:
    from undertaker.proc import scan  # noqa: PLC0415

    return sum(1 for c in scan().children(parent.pid) if not c.is_zombie)


def _do_kill(
    parent: Target, zombies: list[Zombie], args: argparse.Namespace, log: ActionLog
) -> list[Zombie]:
    protect = _protect_set(args.protect)
    check_killable(parent, protect)
    check_may_signal(parent, signal.SIGTERM)  # a dry run says so too
    orphans = _live_children(parent)
    if not args.yes:
        print(
            f"  kill-parent: would send SIGTERM to {parent.pid} ({parent.comm}), SIGKILL "
            f"after {args.grace:g} s; {orphans} live child(ren) would be orphaned too "
            "(dry run; --yes to act)"
        )
        log.write("kill-parent", parent, zombies, dry_run=True, live_children=orphans)
        return []
    outcome = kill_parent(parent, zombies, args.grace, protect)
    print(
        f"  kill-parent: sent {' then '.join(outcome.signals)} to {parent.pid}; "
        f"{len(outcome.reaped)} of {len(zombies)} zombie(s) reaped after adoption"
    )
    for z in zombies:
        adopter = outcome.adopters.get(z.pid)
        # A reaping init takes microseconds: the new parent is then not seen.
        seen = f"adopted by {adopter}" if adopter else "adopted by init or a subreaper"
        done = "reaped" if z.pid in outcome.reaped else "NOT reaped yet: its adopter does not wait"
        print(f"  {z.pid:>7}  {seen}, {done}")
    log.write(
        "kill-parent",
        parent,
        zombies,
        dry_run=False,
        signals=outcome.signals,
        adopters=outcome.adopters,
        reaped=outcome.reaped,
        live_children=orphans,
    )
    return [z for z in zombies if z.pid not in outcome.reaped]


def _protect_set(items: list[str]) -> set[int | str]:
    return {int(i) if i.isascii() and i.isdigit() else i for i in items}


HANDLERS: dict[
    str, Callable[[Target, list[Zombie], argparse.Namespace, ActionLog], list[Zombie]]
] = {
    "nudge": _do_nudge,
    "ptrace": _do_ptrace,
    "kill-parent": _do_kill,
}


def _treat(ppid: int, zombies: list[Zombie], args: argparse.Namespace, log: ActionLog) -> int:
    """Apply the methods to one parent's zombies; return the exit status for them."""
    if ppid == 0:  # the kernel shows 0 for a parent outside our PID namespace
        for zombie in zombies:
            zombie.close()
        err = ParentRefused(zombies[0].pid, "its parent is outside our PID namespace")
        print(f"undertaker reap: {err}", file=sys.stderr)
        return EXIT_PARENT_REFUSED
    try:
        parent = open_parent(zombies[0])
    except ParentGone as err:
        print(f"undertaker reap: {err}", file=sys.stderr)
        return EXIT_PARENT_GONE
    try:
        print(f"parent {ppid} ({parent.comm}): {len(zombies)} zombie(s)")
        for zombie in zombies:
            print(_describe(zombie))
        if args.method == "auto":
            methods = METHODS[: METHODS.index(args.max_method or "ptrace") + 1]
        else:
            methods = (args.method,)
        remaining, refusal = zombies, None
        for method in methods:
            if not remaining:
                break
            try:
                remaining = HANDLERS[method](parent, remaining, args, log)
            except ReapRefused as err:
                print(f"  {method}: refused: {err.reason}")
                refusal = err
        if not remaining:
            return EXIT_OK
        if refusal is not None:
            print(f"undertaker reap: {refusal}", file=sys.stderr)
            return exit_code(refusal)
        return EXIT_REMAINING
    finally:
        parent.close()
        for zombie in zombies:
            zombie.close()


def _usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments argparse alone cannot see, or None."""
    chosen = bool(args.zombies) + (args.parent is not None) + bool(args.all)
    if chosen != 1:
        return "name zombies (ZPID ...), or --parent PPID, or --all (exactly one)"
    beyond = args.method in METHODS and args.max_method is not None
    if beyond and METHODS.index(args.method) > METHODS.index(args.max_method):
        return f"--method {args.method} goes beyond --max {args.max_method}"
    return None


def _more_descriptors() -> None:
    """Raise the soft limit on open files towards the hard one: a pidfd is held per zombie.

    A soft limit of 1,024 (systemd's default) would stop ``--all`` in a
    storm of a thousand zombies, which is when it is needed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, _MAX_FILES)
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def run(args: argparse.Namespace) -> int:
    """Select the zombies, apply the methods per parent, return the worst status."""
    wrong = _usage_error(args)
    if wrong:
        print(f"undertaker reap: error: {wrong}", file=sys.stderr)
        return EXIT_ERROR
    _more_descriptors()
    try:  # before anything is done: an action must not go unlogged
        log = ActionLog(args.log)
    except OSError as err:
        print(
            f"undertaker reap: error: cannot open the log {args.log}: {err.strerror}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        return _run(args, log)
    except LogUnwritable as err:
        print(f"undertaker reap: error: {err}; stopped there", file=sys.stderr)
        return EXIT_ERROR
    finally:
        log.close()


def _run(args: argparse.Namespace, log: ActionLog) -> int:
    codes: list[int] = []
    try:
        groups = _select(args, codes)
    except ReapRefused as err:
        _refused(err, codes)
        return codes[0]
    if not groups and not codes:
        print("no zombies to reap")
        return EXIT_OK
    for ppid, zombies in groups.items():
        try:
            codes.append(_treat(ppid, zombies, args, log))
        except NoSuchProcess as err:
            print(f"undertaker reap: {err}", file=sys.stderr)
            codes.append(EXIT_PARENT_GONE)
    return next((code for code in codes if code != EXIT_OK), EXIT_OK)
