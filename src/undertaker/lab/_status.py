"""The wait-status macros and the stop/continue options (article 004)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from typing import TYPE_CHECKING, Any

from undertaker.lab._core import CONFIRMED, DEPENDS, REFUTED, Lab, Verdict, decide, experiment
from undertaker.lab._programs import comm, core_pattern, cores_stay_local, count_cores, exec_sleep
from undertaker.wait import WaitStatus, signal_name

if TYPE_CHECKING:
    from collections.abc import Callable

_NOTHING = "0 (nothing to report)"


def _macros(status: WaitStatus) -> dict[str, Any]:
    """Every macro of <sys/wait.h>, through the library's WaitStatus."""
    return {
        "raw": hex(status.raw),
        "WIFEXITED": status.exited,
        "WEXITSTATUS": status.exit_code,
        "WIFSIGNALED": status.signaled,
        "WTERMSIG": status.term_signal,
        "WCOREDUMP": status.core_dumped,
        "WIFSTOPPED": status.stopped,
        "WSTOPSIG": status.stop_signal,
        "WIFCONTINUED": status.continued,
    }


@experiment(
    "status-macros",
    "004",
    "WIFEXITED/WEXITSTATUS give exit()'s value; WIFSIGNALED/WTERMSIG the signal; "
    "WCOREDUMP whether a core file was made",
)
def status_macros(lab: Lab) -> Verdict:
    """exit(5), exit(7), SIGTERM, SIGSEGV without and with a core dump."""
    pattern = core_pattern()
    core_dir = tempfile.mkdtemp(prefix="undertaker-lab-core-")
    dump_here = cores_stay_local()
    rows: list[dict[str, Any]] = []
    try:
        cases: list[tuple[str, Callable[[], int] | None, str | None]] = [
            ("exit(5)", lambda: 5, None),
            ("exit(7)", lambda: 7, None),
            ("killed by SIGTERM", _terminate_self, None),
            ("SIGSEGV, RLIMIT_CORE 0", None, None),
        ]
        if dump_here:
            cases.append(("SIGSEGV, core allowed", None, core_dir))
        for label, code, where in cases:
            if code is None:
                pid = lab.fork(exec_sleep, where)
                lab.until(lambda p=pid: comm(p) == "sleep", 2.0)  # type: ignore[misc]
                os.kill(pid, signal.SIGSEGV)
            else:
                pid = lab.fork(code)
            status = lab.reap(pid)
            row = {"case": label, **_macros(status), "described": str(status)}
            rows.append(row)
            lab.say(f"{label}: status {row['raw']} -> {status}")
        cores = count_cores(core_dir)
    finally:
        shutil.rmtree(core_dir, ignore_errors=True)
    if not dump_here:
        lab.say(f"no core was attempted: core_pattern is {pattern!r}, not a file name here")
    else:
        lab.say(f"core files written: {cores} (then deleted)")
    lab.record(cases=rows, core_pattern=pattern, core_files=cores)
    by = {r["case"]: r for r in rows}
    exits = by["exit(5)"]["WEXITSTATUS"] == 5 and by["exit(7)"]["WEXITSTATUS"] == 7
    term = by["killed by SIGTERM"]
    signals = term["WIFSIGNALED"] and term["WTERMSIG"] == signal.SIGTERM and not term["WIFEXITED"]
    no_core = not by["SIGSEGV, RLIMIT_CORE 0"]["WCOREDUMP"]
    core = by.get("SIGSEGV, core allowed")
    core_matches = core is None or core["WCOREDUMP"] == bool(cores)
    if not (exits and signals and no_core and core_matches):
        return Verdict(REFUTED, "a macro disagreed with how the child ended")
    return decide(
        core is not None,
        Verdict(
            CONFIRMED,
            "each macro matched how the child ended, and WCOREDUMP was set exactly when a "
            "core file was written",
        ),
        Verdict(
            DEPENDS,
            "the exit and signal macros matched; whether a core is written (WCOREDUMP) "
            "depends on RLIMIT_CORE and core_pattern, which here allowed no test",
        ),
    )


def _terminate_self() -> int:
    os.kill(os.getpid(), signal.SIGTERM)
    return 9  # not reached: SIGTERM's default action ends us


def _pause() -> int:
    signal.pause()
    return 0


@experiment(
    "stop-continue",
    "004",
    "WUNTRACED reports a stopped child (WIFSTOPPED, WSTOPSIG); WIFCONTINUED one resumed by SIGCONT",
)
def stop_continue(lab: Lab) -> Verdict:
    """Stop a child with SIGSTOP and SIGTSTP, resume it, and ask waitpid with each option.

    The child gets a process group of its own, whose parent (the lab) is in
    another group of the same session: the kernel discards SIGTSTP sent to an
    orphaned group, which ours would be if the lab ran as a session leader
    (``setsid``, a service, a CI job).
    """
    child = lab.fork(_pause, name="stoppable")
    os.setpgid(child, child)  # a child that has not exec'd: the call cannot be refused
    seen: dict[str, str] = {}
    for sig in (signal.SIGSTOP, signal.SIGTSTP):
        os.kill(child, sig)
        lab.wait_state(child, "T", 2.0)
        seen[f"{signal_name(sig)}: waitpid(WNOHANG)"] = _poll(child, os.WNOHANG)
        seen[f"{signal_name(sig)}: waitpid(WUNTRACED)"] = _poll(child, os.WUNTRACED)
        if sig == signal.SIGSTOP:
            lab.ps("stopped", [child])
        os.kill(child, signal.SIGCONT)
        lab.wait_state(child, "SR", 2.0)
        seen[f"{signal_name(sig)}, SIGCONT: waitpid(WNOHANG)"] = _poll(child, os.WNOHANG)
        seen[f"{signal_name(sig)}, SIGCONT: waitpid(WCONTINUED)"] = _poll(child, os.WCONTINUED)
    os.kill(child, signal.SIGTERM)
    final = lab.reap(child)
    for call, result in seen.items():
        lab.say(f"{call} -> {result}")
    lab.record(calls=seen, final=str(final))
    stop_ok = all(
        seen[f"{name}: waitpid(WUNTRACED)"] == f"stopped by {name}"
        for name in ("SIGSTOP", "SIGTSTP")
    )
    names = ("SIGSTOP", "SIGTSTP")
    hidden = all(
        seen[f"{n}: waitpid(WNOHANG)"] == seen[f"{n}, SIGCONT: waitpid(WNOHANG)"] == _NOTHING
        for n in names
    )
    cont_ok = all(seen[f"{n}, SIGCONT: waitpid(WCONTINUED)"] == "continued" for n in names)
    return decide(
        stop_ok and cont_ok and hidden,
        Verdict(
            CONFIRMED,
            "waitpid reported the stop only with WUNTRACED (WIFSTOPPED, WSTOPSIG the signal) "
            "and the resume only with WCONTINUED (WIFCONTINUED)",
        ),
        Verdict(REFUTED, "waitpid did not report the stop or the resume as described"),
    )


def _poll(pid: int, options: int) -> str:
    got, status = 0, 0
    deadline = time.monotonic() + (0.05 if options == os.WNOHANG else 1.0)
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, options | os.WNOHANG)
        if got or options == os.WNOHANG:
            break
        time.sleep(0.002)
    return str(WaitStatus(status)) if got else _NOTHING


def _sleeper() -> int:
    time.sleep(0.2)
    return 0


@experiment(
    "waitpid-options",
    "004",
    "Linux supports only two waitpid options, WNOHANG and WUNTRACED",
)
def waitpid_options(lab: Lab) -> Verdict:
    """Try the options the article says do not exist."""
    child = lab.fork(_sleeper, name="sleeper")
    tried: dict[str, str] = {}
    for name in ("WNOHANG", "WUNTRACED", "WCONTINUED", "__WALL", "__WCLONE", "__WNOTHREAD"):
        value = (
            getattr(os, name, None)
            or {"__WALL": 0x40000000, "__WCLONE": -0x80000000, "__WNOTHREAD": 0x20000000}[name]
        )
        try:
            got = os.waitpid(child, value | os.WNOHANG)
            tried[f"waitpid({name})"] = "accepted" if got == (0, 0) else f"returned {got}"
        except ChildProcessError:  # a valid option that selects no child of ours
            tried[f"waitpid({name})"] = "accepted (ECHILD: it selects clone children only)"
        except OSError as err:
            tried[f"waitpid({name})"] = f"refused: {os.strerror(err.errno or 0)}"
    os.kill(child, signal.SIGTERM)
    lab.wait_state(child, "Z", 2.0)
    peek = os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
    tried["waitid(WNOWAIT)"] = (
        f"accepted: peeked at {WaitStatus.from_waitid(peek)}, child still {lab.state(child)}"
        if peek
        else "accepted"
    )
    lab.reap(child)
    for call, result in tried.items():
        lab.say(f"{call} -> {result}")
    lab.record(options=tried)
    extra = [
        k
        for k, v in tried.items()
        if v.startswith("accepted") and "WNOHANG" not in k and "WUNTRACED" not in k
    ]
    return decide(
        bool(extra),
        Verdict(
            REFUTED,
            f"the kernel also accepts {', '.join(extra)}: WCONTINUED since Linux 2.6.10, "
            "and waitid's WNOWAIT leaves the child waitable",
        ),
        Verdict(CONFIRMED, "every option beyond WNOHANG and WUNTRACED was refused"),
    )


EXPERIMENTS = (status_macros, stop_continue, waitpid_options)
