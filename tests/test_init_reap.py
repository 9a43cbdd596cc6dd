"""``undertaker run``: reaping orphans as PID 1 or subreaper, and draining the tree on exit."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import AS_NOBODY, needs_namespace
from init_children.harness import INIT, PYTHON, UNSHARE, Init, child, run_init, state
from undertaker.testing import sleep_until

MODE = [pytest.param("pid1", marks=needs_namespace), "subreaper"]


@pytest.fixture(params=MODE)
def mode(request: pytest.FixtureRequest) -> str:
    """Both ways of reaping: PID 1 of a new namespace, and child subreaper."""
    return str(request.param)


@pytest.mark.smoke
def test_orphan_storm_of_100_leaves_no_zombie(mode: str) -> None:
    """100 orphans exiting at once are all reaped by the init; none is left as a zombie."""
    done = run_init(mode, ["--log-reaped"], child("orphans", "100"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["left"] == []
    assert len(report["orphans"]) == 100
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    reaped = {line["pid"] for line in lines if line["event"] == "reaped" and not line["main"]}
    if mode == "subreaper":  # PIDs are the same on both sides only outside a namespace
        assert set(report["orphans"]) <= reaped
    assert lines[-1]["event"] == "exit"
    assert lines[-1]["orphans_adopted"] >= 100


@needs_namespace
def test_no_zombie_left_in_the_namespace() -> None:
    """After the storm, a /proc census inside the namespace counts zero zombies."""
    script = f"{' '.join(child('orphans', '100'))} >/dev/null && {' '.join(child('count_zombies'))}"
    command = ["sh", "-c", script]
    done = run_init("pid1", [], command)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


@pytest.mark.smoke
def test_negative_control_without_subreaper_the_storm_test_fails() -> None:
    """Not PID 1 and --no-subreaper: the same test fails, and the warning says how to fix it.

    The orphans go to this test process (the session's subreaper), which
    does not reap them until told to: they stay zombies, so the child
    reports them left and exits 1. This proves the storm test can fail.
    """
    done = run_init("subreaper", ["--no-subreaper"], child("orphans", "20", "1.0"))
    report = json.loads(done.stdout)
    try:
        assert done.returncode == 1
        assert len(report["left"]) == 20
        assert report["adopted_by"] == [str(os.getpid())]
        assert "not PID 1 and not a child subreaper" in done.stderr
        assert "docker run --init" in done.stderr
        assert "shareProcessNamespace" in done.stderr
    finally:
        for pid in report["orphans"]:  # ours now: reap them, leave nothing behind
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def test_subreaper_from_environment_zero_is_the_same_as_the_flag() -> None:
    """UNDERTAKER_SUBREAPER=0 turns the subreaper off (and warns)."""
    env = {**os.environ, "UNDERTAKER_SUBREAPER": "0"}
    done = run_init("subreaper", [], ["true"], env=env)
    assert done.returncode == 0
    assert "not a child subreaper" in done.stderr


@needs_namespace
def test_pid1_needs_no_subreaper_and_says_nothing() -> None:
    """As PID 1 there is nothing to warn about, even with --no-subreaper."""
    done = run_init("pid1", ["--no-subreaper"], child("orphans", "10"))
    assert done.returncode == 0
    assert done.stderr == ""


@pytest.mark.smoke
def test_drain_terms_setsid_escapee_waits_for_it_and_kills_the_stubborn(mode: str) -> None:
    """Main child exits: the setsid escapee gets TERM and 0.5 s to finish, the TERM-ignorer SIGKILL.

    The init exits only after both are gone, with the main child's status.
    """
    grace = 2.0
    with Init(mode, ["--grace", f"{grace}s", "--log-reaped"], child("drain_tree", "0.5")) as init:
        tree = json.loads(init.expect("{"))
        assert tree["sessions"]["slow"] != tree["sid"]  # really escaped the session
        start = time.monotonic()
        code = init.wait(timeout=20)
        elapsed = time.monotonic() - start
    assert code == 0
    out = init.rest()
    assert "slow got TERM" in out
    assert "slow exits" in out  # it was allowed to finish its handler
    assert grace - 0.2 <= elapsed <= grace + 3, elapsed
    events = [json.loads(line) for line in init.stderr.splitlines() if line.startswith("{")]
    reaped = {e["pid"]: e for e in events if e["event"] == "reaped"}
    if mode == "subreaper":
        assert reaped[tree["slow"]]["exit_code"] == 0
        assert reaped[tree["stubborn"]]["signal"] == signal.SIGKILL
    else:
        ends = {(e["exit_code"], e["signal"]) for e in reaped.values() if not e["main"]}
        assert ends == {(0, None), (None, signal.SIGKILL)}
    assert events[-1] == {
        "event": "exit", "exit_code": 0, "reaped": 3, "orphans_adopted": 2, "drained": 2,
    }  # fmt: skip
    assert "still running 2s after SIGTERM; sending SIGKILL" in init.stderr


def test_drain_is_quick_when_everything_obeys_term(mode: str) -> None:
    """Leftovers that exit on TERM end the drain at once, long before the grace period."""
    code = "import subprocess; subprocess.Popen(['sleep', '60']); subprocess.Popen(['sleep', '60'])"
    start = time.monotonic()
    done = run_init(mode, ["--grace", "20s"], [PYTHON, "-c", code])
    assert done.returncode == 0
    assert time.monotonic() - start < 5


def test_terminating_signal_drains_orphans_while_the_main_child_shuts_down(mode: str) -> None:
    """SIGTERM to the init: the child gets it, the adopted orphans get TERM too; exit 143."""
    code = (
        "import os, sys, time\n"
        "middle = os.fork()\n"
        "if middle == 0:\n"
        "    if os.fork() == 0: time.sleep(60)\n"  # the orphan, adopted by the init
        "    os._exit(0)\n"
        "os.waitpid(middle, 0)\n"  # now the orphan exists and belongs to the init
        "print('ready', flush=True); time.sleep(60)\n"
    )
    with Init(mode, ["--grace", "5s", "--log-reaped"], [PYTHON, "-c", code]) as init:
        init.expect("ready")
        start = time.monotonic()
        init.send(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM
        assert time.monotonic() - start < 4
    events = [json.loads(line) for line in init.stderr.splitlines()]
    assert events[-1]["drained"] == 1
    assert [e["signal"] for e in events if e["event"] == "reaped"] == [15, 15]


def test_main_child_that_ignores_term_is_killed_after_the_grace_period(mode: str) -> None:
    """A main child that ignores SIGTERM is SIGKILLed at the end of the grace period: 137."""
    code = "import signal, time; signal.signal(15, signal.SIG_IGN); print('ready', flush=True);"
    code += "time.sleep(60)"
    with Init(mode, ["--grace", "1s"], [PYTHON, "-c", code]) as init:
        init.expect("ready")
        start = time.monotonic()
        init.send(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGKILL
        assert 0.9 <= time.monotonic() - start < 4


def test_kill_orphans_kills_adopted_orphans_at_once(mode: str) -> None:
    """--kill-orphans: an orphan is killed as soon as it is adopted; the main child lives on."""
    code = (
        "import os, sys, time\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        os.close(r); time.sleep(60)\n"
        "    os._exit(0)\n"
        "os.close(w); os.wait()\n"
        "start = time.monotonic(); os.read(r, 1)\n"  # EOF once the orphan is dead
        "print('orphan gone after %.3f s' % (time.monotonic() - start), flush=True)\n"
    )
    done = run_init(mode, ["--kill-orphans", "--log-reaped"], [PYTHON, "-c", code], timeout=20)
    assert done.returncode == 0
    seconds = float(done.stdout.split()[3])
    assert seconds < 1.0
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["signal"] for e in events if e["event"] == "reaped" and not e["main"]] == [9]


def test_kill_orphans_negative_control() -> None:
    """Without --kill-orphans the orphan lives until the drain."""
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0: time.sleep(60)\n"
        "    os._exit(0)\n"
        "os.wait(); time.sleep(0.5)\n"
    )
    done = run_init("subreaper", ["--log-reaped"], [PYTHON, "-c", code])
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert events[-1]["drained"] == 1  # it was still there when the main child exited


def test_listen_pid_is_rewritten_to_the_child(mode: str) -> None:
    """LISTEN_PID (socket activation) is set to the child's own PID."""
    env = {**os.environ, "LISTEN_PID": "12345", "LISTEN_FDS": "1"}
    code = "import os; print(os.environ['LISTEN_PID'], os.getpid(), os.environ['LISTEN_FDS'])"
    done = run_init(mode, [], [PYTHON, "-c", code], env=env)
    listen_pid, pid, fds = done.stdout.split()
    assert listen_pid == pid
    assert fds == "1"


def test_listen_pid_absent_stays_absent() -> None:
    """Without LISTEN_PID nothing is added to the environment."""
    done = run_init("subreaper", [], [PYTHON, "-c", "import os; print('LISTEN_PID' in os.environ)"])
    assert done.stdout.strip() == "False"


def test_init_moves_to_root_but_the_child_keeps_its_cwd(tmp_path: Path) -> None:
    """The init's cwd is /, the child's is the caller's."""
    code = "import os; print(os.getcwd()); print(os.readlink(f'/proc/{os.getppid()}/cwd'))"
    done = subprocess.run(
        [PYTHON, "-m", "undertaker", "run", "--", PYTHON, "-c", code],
        capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path,
    )  # fmt: skip
    child_cwd, init_cwd = done.stdout.splitlines()
    assert child_cwd == str(tmp_path)
    assert init_cwd == "/"


def test_the_init_leaves_nothing_behind(mode: str) -> None:
    """Before it exits, the init has ended and reaped every process it ran.

    Looking after the exit proves nothing as PID 1: the kernel kills what is
    left of a namespace when its init exits. So the check is the init's own
    record, written before it exits: each of the three ``setsid`` sleepers
    (PIDs as the child saw them, the same namespace as the init's) was
    reaped, killed by the drain's SIGTERM, and 4 were reaped in all. An init
    that left them running would log none of that. As a subreaper, the
    sleepers would outlive it, so they are also looked for from here.
    """
    code = (
        "import os, subprocess\n"
        "ps = [subprocess.Popen(['sleep', '60'], start_new_session=True) for _ in range(3)]\n"
        "print(' '.join(str(p.pid) for p in ps), flush=True)\n"
    )
    done = run_init(mode, ["--grace", "1s", "--log-reaped"], [PYTHON, "-c", code])
    assert done.returncode == 0
    sleepers = set(map(int, done.stdout.split()))
    assert len(sleepers) == 3
    events = [json.loads(line) for line in done.stderr.splitlines()]
    ends = {e["pid"]: e["signal"] for e in events if e["event"] == "reaped" and not e["main"]}
    assert ends == dict.fromkeys(sleepers, signal.SIGTERM)
    assert events[-1]["reaped"] == 4
    if mode == "subreaper":
        for pid in sleepers:
            assert sleep_until(lambda pid=pid: state(pid) is None, 2)


def test_log_reaped_json_lines_are_valid_and_complete() -> None:
    """--log-reaped: one JSON object per reaped process with pid, comm, status, age; then exit."""
    # No Popen object: its __del__ would try a non-blocking wait and, when sh has
    # already exited, reap it before the init could adopt it as an orphan.
    code = "import os, time; os.spawnv(os.P_NOWAIT, '/bin/sh', ['sh', '-c', 'exit 3'])"
    code += "; time.sleep(0.3)"
    done = run_init("subreaper", ["--log-reaped"], [PYTHON, "-c", code])
    events = [json.loads(line) for line in done.stderr.splitlines()]
    orphan = next(e for e in events if e["event"] == "reaped" and not e["main"])
    assert orphan["comm"] == "sh"
    assert orphan["exit_code"] == 3
    assert orphan["signal"] is None
    assert 0 <= orphan["age_s"] < 5
    main = next(e for e in events if e["event"] == "reaped" and e["main"])
    assert main["comm"] == "python" or main["comm"].startswith("python")
    assert events[-1] == {
        "event": "exit", "exit_code": 0, "reaped": 2, "orphans_adopted": 1, "drained": 0,
    }  # fmt: skip


def test_without_log_reaped_stderr_is_silent() -> None:
    """By default the init writes nothing of its own."""
    code = "import subprocess; subprocess.Popen(['true'])"
    done = run_init("subreaper", [], [PYTHON, "-c", code])
    assert done.stderr == ""
    assert done.returncode == 0


# The init as an unprivileged user (uid/gid 65534, "nobody") that has a root child.
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv(1)")


def run_unprivileged_init_with_a_root_child(
    options: list[str], command: list[str], *, hidepid: bool = False
) -> tuple[subprocess.CompletedProcess[str], int, float]:
    """PID 1 of a new namespace: a root shell starts ``sleep`` and execs the init as nobody.

    The simplest real way for a non-root init to own a process it may not
    signal: a child outlives the exec that turns its parent into the init
    (the same thing happens when a root ``docker exec`` leaves an orphan
    behind in a container whose init runs as a user). ``kill`` then fails with
    EPERM. With *hidepid*, /proc is remounted ``hidepid=1`` first, so the
    root process's ``/proc/PID/stat`` cannot even be read (EACCES).

    Returns the finished run, the root child's PID in the namespace, and the
    run's duration. The namespace's end (``--kill-child``) kills the sleep.
    """
    script = "mount -o remount,hidepid=1 /proc && " if hidepid else ""
    script += "sleep 30 >/dev/null 2>&1 & echo $! && "
    script += f"exec {shlex.join([*AS_NOBODY, *INIT, *options, '--', *command])}"
    start = time.monotonic()
    done = subprocess.run(
        [*UNSHARE, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done, int(done.stdout.split()[0]), time.monotonic() - start


@needs_namespace
@needs_setpriv
def test_drain_warns_once_about_a_process_it_may_not_signal_and_carries_on() -> None:
    """EPERM in the drain: one warning for that PID, no traceback, the child's status.

    The root ``sleep`` refuses SIGTERM; once the main child is gone and that
    is all that is left, the init exits (as PID 1, that ends it) instead of
    waiting out the 20 s grace period for a process that got no signal.
    """
    done, root_pid, elapsed = run_unprivileged_init_with_a_root_child(
        ["--grace", "20s"], ["sh", "-c", "exit 7"]
    )
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr
    warning = f"undertaker run: warning: cannot signal pid {root_pid}: different user"
    assert done.stderr.splitlines().count(warning) == 1, done.stderr
    assert elapsed < 10, elapsed


@needs_namespace
@needs_setpriv
def test_kill_orphans_warns_once_about_a_process_it_may_not_signal() -> None:
    """--kill-orphans polls every 50 ms: the refused SIGKILL is reported once, not each time."""
    done, root_pid, _ = run_unprivileged_init_with_a_root_child(
        ["--kill-orphans", "--grace", "0.3s"], ["sleep", "0.5"]
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warning = f"undertaker run: warning: cannot signal pid {root_pid}: different user"
    assert done.stderr.splitlines().count(warning) == 1, done.stderr


@needs_namespace
@needs_setpriv
def test_drain_skips_processes_hidden_by_hidepid() -> None:
    """/proc with hidepid=1: another user's stat gives EACCES, which the drain skips.

    The main child leaves a worker of its own user behind: the drain still
    finds it in /proc and ends it with SIGTERM, and the init exits with the
    main child's status, long before the 20 s grace period.
    """
    command = ["sh", "-c", "sleep 60 & exit 3"]
    done, root_pid, elapsed = run_unprivileged_init_with_a_root_child(
        ["--grace", "20s", "--log-reaped"], command, hidepid=True
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    signals = [e["signal"] for e in events if e["event"] == "reaped" and not e["main"]]
    assert signal.SIGTERM in signals  # the worker, drained
    assert f"cannot signal pid {root_pid}: different user" in done.stderr
    assert elapsed < 10, elapsed


# unshare without --mount-proc: the namespace's /proc is still the host's.
UNSHARE_NO_PROC = [word for word in UNSHARE if word != "--mount-proc"]
WORKER_AND_EXIT = (
    "import subprocess, sys, time\n"
    "w = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"  # a setsid escapee
    "time.sleep(0.5)\n"  # --kill-orphans polls every 50 ms: time to hit it, if it would
    "print('worker', 'alive' if w.poll() is None else 'dead', flush=True)\n"
    "sys.exit(4)\n"
)


@needs_namespace
def test_foreign_proc_is_detected_and_not_trusted_as_pid1() -> None:
    """PID 1 with the host's /proc: one warning; no comm from the wrong table; still drains.

    The /proc-based parts are off: the log has no comm (it used to name the
    host's ``kthreadd`` for PID 2), ``--kill-orphans`` cannot misread the
    host's PIDs as ours (the main child's worker lives), and the drain ends
    the ``setsid`` worker with ``kill(-1, SIGTERM)``, long before the grace.
    """
    argv = [*UNSHARE_NO_PROC, *INIT, "--log-reaped", "--kill-orphans", "--grace", "20s"]
    start = time.monotonic()
    done = subprocess.run(
        [*argv, "--", PYTHON, "-c", WORKER_AND_EXIT],
        capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert done.returncode == 4, done.stderr
    assert done.stdout == "worker alive\n"
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, done.stderr
    assert "/proc does not show this PID namespace" in warnings[0]
    assert "--mount-proc" in warnings[0]
    assert "every process in the namespace" in warnings[0]
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    reaped = [e for e in events if e["event"] == "reaped"]
    assert all(e["comm"] is None and "age_s" not in e for e in reaped), reaped
    assert sorted((e["main"], e["exit_code"], e["signal"]) for e in reaped) == [
        (False, None, signal.SIGTERM),
        (True, 4, None),
    ]
    assert elapsed < 10, elapsed


@needs_namespace
def test_foreign_proc_as_subreaper_drains_the_process_group() -> None:
    """Not PID 1, host's /proc: the drain falls back to the command's process group."""
    init = shlex.join([*INIT, "--grace", "20s", "--", "sh", "-c", "sleep 60 & exit 5"])
    start = time.monotonic()
    done = subprocess.run(
        [*UNSHARE_NO_PROC, "sh", "-c", f"{init}; echo init=$?"],
        capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.stdout == "init=5\n", done.stderr
    assert "only the command's process group" in done.stderr
    assert time.monotonic() - start < 10


@needs_namespace
def test_own_proc_gives_no_warning_and_the_comm() -> None:
    """With --mount-proc, /proc is the namespace's: no warning, and comm in the log."""
    done = run_init("pid1", ["--log-reaped", "--kill-orphans"], ["sleep", "0.2"])
    assert done.returncode == 0
    assert "warning" not in done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert events[0]["comm"] == "sleep"
    assert events[0]["main"]
