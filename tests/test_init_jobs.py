"""``undertaker run`` and job control: a forwarded TSTP, TTIN or TTOU stops the init too."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from helpers import needs_namespace
from init_children.harness import INIT, PYTHON, Init, child, end_tree, state
from undertaker.testing import sleep_until

JOB_CONTROL = [signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU]


@pytest.mark.parametrize("signum", JOB_CONTROL, ids=lambda s: signal.Signals(s).name)
def test_a_forwarded_job_signal_stops_the_init_even_if_the_child_catches_it(signum: int) -> None:
    """The child handles the signal and runs on; the init stops, as dumb-init does.

    SIGCONT resumes the init, which passes it on to the child's group.
    """
    with Init("subreaper", [], child("print_signals")) as init:
        child_pid = int(init.expect("ready child").split()[2])
        init.send(signum)
        assert init.expect("child ") == f"child {signum}"
        assert sleep_until(lambda: state(init.pid) == "T", 10), state(init.pid)
        assert state(child_pid) in ("R", "S")  # it caught the signal: it is not stopped
        init.send(signal.SIGCONT)
        assert init.expect("child ") == f"child {signal.SIGCONT}"
        assert sleep_until(lambda: state(init.pid) == "S", 10), state(init.pid)
        assert init.wait() == 0


@pytest.mark.parametrize("signum", JOB_CONTROL, ids=lambda s: signal.Signals(s).name)
def test_a_child_that_does_not_catch_it_stops_with_the_init(signum: int) -> None:
    """Default action: both stop; SIGCONT resumes both."""
    code = "import os; print('ready', os.getpid(), flush=True); os.read(0, 1)"
    with Init("subreaper", [], [PYTHON, "-c", code]) as init:
        child_pid = int(init.expect("ready").split()[1])
        init.send(signum)
        both = (init.pid, child_pid)
        assert sleep_until(lambda: [state(p) for p in both] == ["T", "T"], 10)
        init.send(signal.SIGCONT)
        assert sleep_until(lambda: [state(p) for p in both] == ["S", "S"], 10)
        assert init.wait() == 0


def test_a_dropped_tstp_does_nothing_at_all() -> None:
    """``-r TSTP:0`` means Ctrl-Z is ignored: the init does not stop either (dumb-init would)."""
    with Init("subreaper", ["-r", "TSTP:0"], child("print_signals")) as init:
        init.expect("ready child")
        init.send(signal.SIGTSTP)
        init.send(signal.SIGUSR1)  # handled only if the init is still running
        assert init.expect("child ") == f"child {signal.SIGUSR1}"
        assert state(init.pid) in ("R", "S")
        assert init.wait() == 0


@needs_namespace
def test_as_pid1_only_the_child_gets_it() -> None:
    """PID 1 cannot stop itself (the kernel drops the SIGSTOP): it forwards and carries on."""
    with Init("pid1", [], child("print_signals")) as init:
        init.expect("ready child")
        init.send(signal.SIGTSTP)
        assert init.expect("child ") == f"child {signal.SIGTSTP}"
        init.send(signal.SIGUSR1)
        assert init.expect("child ") == f"child {signal.SIGUSR1}"
        assert init.wait() == 0


# Catches TSTP and runs on; says ready on the fifo ARGV[1]; exits 0 on USR1,
# or 3 after 20 s if nobody sends it.
CATCHER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTSTP, lambda *_: None)\n"
    "signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0))\n"
    "open(sys.argv[1], 'w').write('ready\\n')\n"
    "time.sleep(20)\n"
    "sys.exit(3)\n"
)
# A shell with job control: kill -TSTP the job, wait (returns when it stops),
# then resume it and have it exit.
SHELL = """
set -m
"$@" &
job=$!
read -r line < "$FIFO"
kill -TSTP "$job"
wait "$job"
echo "stopped rc=$?"
kill -CONT "$job"
# Until it is gone (wait returns at once while bash still sees the job stopped);
# USR1 again each time: dumb-init sometimes loses one that comes with the SIGCONT.
while kill -0 "$job" 2>/dev/null; do kill -USR1 "$job"; sleep 0.1; done
wait "$job"
echo "final rc=$?"
"""
INITS = {
    "undertaker": [*INIT, "--"],
    "dumb-init -c": ["dumb-init", "-c", "--"],  # the reference, side by side
}


@pytest.mark.parametrize("name", list(INITS))
def test_kill_tstp_then_wait_in_a_shell_returns(name: str, tmp_path: Path) -> None:
    """``kill -TSTP job; wait job`` in a job-control shell returns at once, 128+SIGSTOP.

    The child catches TSTP and keeps running; the shell sees its job (the
    init) stopped all the same. Before, the wait hung until the child ended.
    """
    if name != "undertaker" and shutil.which("dumb-init") is None:
        pytest.skip("dumb-init is not installed")
    fifo = tmp_path / "ready"
    subprocess.run(["mkfifo", str(fifo)], check=True)
    command = [PYTHON, "-c", CATCHER, str(fifo)]
    shell = subprocess.Popen(
        ["bash", "-c", SHELL, "bash", *INITS[name], *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={"FIFO": str(fifo), "PATH": "/usr/bin:/bin"},
        text=True,
    )
    try:
        out, _ = shell.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        end_tree(shell.pid)
        out, _ = shell.communicate()
        pytest.fail(f"{name}: the shell's wait hung; output so far {out!r}")
    assert out.splitlines() == [f"stopped rc={128 + signal.SIGSTOP}", "final rc=0"], out
