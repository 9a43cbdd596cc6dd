"""``undertaker run``'s main(): the whole life of the init in named steps."""

from __future__ import annotations

import os
import sys

from undertaker.init import _drain, _prctl
from undertaker.init._options import HELP, Options, UsageError, parse_options
from undertaker.init._report import Reporter
from undertaker.init._signals import InheritedSignals
from undertaker.init._spawn import Child, ExecFailed, spawn
from undertaker.init._supervise import Supervisor
from undertaker.wait import WaitStatus, signal_name  # loaded with the package already

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import NoReturn

EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_PIPE_CLOSED = 128 + 13  # as a shell reports a process killed by SIGPIPE

NOT_REAPING = (
    "not PID 1 and not a child subreaper: orphaned processes will be re-parented "
    "outside this tree, and can pile up as zombies there. Fix: run undertaker as "
    "PID 1 (ENTRYPOINT), let the runtime add an init (docker run --init; in "
    "Kubernetes, shareProcessNamespace: true), or allow prctl(PR_SET_CHILD_SUBREAPER)"
)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the init and leave through ``os._exit`` (interpreter shutdown costs ~6 ms)."""
    code = run(sys.argv[1:] if argv is None else argv, os.environ)
    os._exit(code)


def run(argv: list[str], environ: Mapping[str, str]) -> int:
    """Parse *argv*, start the command, supervise it; return the init's exit status."""
    report = Reporter(reaped_lines=False)
    try:
        options = parse_options(argv, dict(environ))
    except UsageError as err:
        report.error(f"{err} (see undertaker run --help)")
        return EXIT_USAGE
    if options.help:
        return say(HELP, report)
    if options.version:
        from undertaker import __version__  # noqa: PLC0415  (the package root, loaded already)

        return say(f"undertaker run {__version__}\n", report)
    report.reaped_lines = options.log_reaped
    report.verbose = options.verbose
    signals = InheritedSignals()
    become_reaper(options, report)
    try:
        arm_parent_death_signal(options.pdeathsig)
        child = spawn(options.command, signals, dict(environ))
    except ExecFailed as err:
        report.error(f"cannot run {options.command[0]!r}: {err.strerror}")
        return err.exit_code
    except OSError as err:
        report.error(f"cannot start {options.command[0]!r}: {err.strerror}")
        return EXIT_INTERNAL
    leave_working_directory()
    proc = check_proc(report)
    if report.verbose:
        report.info(describe_start(child, options))
    supervisor = Supervisor(child, options, signals, report, proc=proc)
    status = supervisor.run()
    supervisor.give_back_terminal()
    code = exit_code(status, options.remap_exit)
    report.summary(supervisor.stats, code)
    report.info(f"exiting with status {code}")
    return code


def say(text: str, report: Reporter) -> int:
    """Print *text*: 0; 2 with one line when stdout is unwritable; 141 when its reader left."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        return EXIT_PIPE_CLOSED  # | head: nothing to say, like the other commands
    except OSError as err:
        report.error(f"cannot write to standard output: {err.strerror}")
        return EXIT_USAGE
    return 0


def become_reaper(options: Options, report: Reporter) -> None:
    """Make sure orphans come to us: PID 1 already is their reaper, else the prctl."""
    if os.getpid() == 1:
        report.info("PID 1: orphans of this namespace come here by kernel rule")
        return
    if not options.subreaper:
        report.warning(NOT_REAPING)
        return
    try:
        _prctl.set_child_subreaper()
    except OSError as err:
        report.warning(f"PR_SET_CHILD_SUBREAPER failed ({err.strerror}); {NOT_REAPING}")
    else:
        report.info(f"pid {os.getpid()} is a child subreaper: orphans below it come here")


def describe_start(child: Child, options: Options) -> str:
    """``-v``: the command, where signals go, and what happens when it exits."""
    target = f"process group {child.pgid}" if options.process_group else f"pid {child.pid}"
    terminal = ", owns the terminal" if child.tty is not None else ""
    if options.drain:
        stop = options.stop_signal()
        told = signal_name(stop) if stop else "no stop signal"
        end = f"then drain: {told}, {options.grace:g}s grace, SIGKILL"
    else:
        end = "then exit at once (--no-drain)"
    return (
        f"started {options.command[0]!r} as pid {child.pid}{terminal}; "
        f"signals go to {target}; {end}"
    )


def check_proc(report: Reporter) -> bool:
    """Whether /proc is this PID namespace's; if not, say what is lost and how to fix it."""
    if _drain.proc_is_ours():
        return True
    reach = (
        "every process in the namespace (kill -1)"
        if os.getpid() == 1
        else "only the command's process group"
    )
    report.warning(
        "/proc does not show this PID namespace (mount one: unshare --mount-proc, or "
        f"mount -t proc proc /proc): the drain reaches {reach}, --kill-orphans is off, "
        "and --log-reaped shows no comm or age"
    )
    return False


def arm_parent_death_signal(signum: int) -> None:
    """``--pdeathsig``: arm it, and fire now if the parent is already gone.

    Raises:
        OSError: the kernel refused the prctl.
    """
    if not signum:
        return
    parent = os.getppid()
    _prctl.set_parent_death_signal(signum)
    if os.getppid() != parent:  # it died before the prctl: the kernel will not tell us
        os.kill(os.getpid(), signum)


def leave_working_directory() -> None:
    """Move the init to ``/`` so it does not keep a mount busy (the child keeps its cwd)."""
    try:
        os.chdir("/")
    except OSError:  # no / in a chroot without it: harmless, stay where we are
        pass


def exit_code(status: int, remap: set[int]) -> int:
    """The shell's convention: the exit code, or 128+N for signal N; then ``-e`` remaps.

    >>> exit_code(143 << 8, set()), exit_code(15, set()), exit_code(15, {143})
    (143, 143, 0)
    """
    code = WaitStatus(status).shell_code
    return 0 if code in remap else code


__all__ = ["exit_code", "main", "run"]
