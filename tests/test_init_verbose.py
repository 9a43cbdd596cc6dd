"""``undertaker run --version`` and ``-v``: what the init is, and what it does."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from helpers import needs_namespace, run_with_bad_stdout
from init_children.harness import INIT, PYTHON, Init, run_init, state
from undertaker import __version__
from undertaker.testing import sleep_until


@pytest.mark.parametrize("spelling", ["--version", "-V"])
def test_version_prints_the_package_version_and_runs_nothing(spelling: str) -> None:
    """Like dumb-init's ``-V``: one line, exit 0; no command needed, none run."""
    done = subprocess.run(
        [*INIT, spelling], capture_output=True, text=True, timeout=30, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"undertaker run {__version__}\n", "")
    done = subprocess.run(
        [*INIT, spelling, "--", "sh", "-c", "echo ran"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout == f"undertaker run {__version__}\n"


@pytest.mark.parametrize("option", ["--version", "--help"])
def test_version_and_help_to_an_unwritable_stdout(option: str) -> None:
    """> /dev/full: one line and exit 2, no traceback; a closed pipe: 141, nothing said."""
    done = run_with_bad_stdout([*INIT, option], "full")
    assert (done.returncode, done.stderr) == (
        2,
        "undertaker run: error: cannot write to standard output: No space left on device\n",
    )
    done = run_with_bad_stdout([*INIT, option], "closed")
    assert (done.returncode, done.stderr) == (141, "")


# The main child leaves an orphan behind, then says ready and waits for its TERM.
FAMILY = """
import os, signal, time
middle = os.fork()
if middle == 0:
    if os.fork() == 0:
        os.close(0)
        time.sleep(60)
    os._exit(0)
os.waitpid(middle, 0)
print("ready", os.getpid(), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", [["-v"], ["--verbose"], ["UNDERTAKER_VERBOSE=1"]])
def test_verbose_says_what_the_init_does(how: list[str]) -> None:
    """Start, reaper, forwarding (with the rewrite), the drain, each reap, the exit status."""
    options = how if how[0].startswith("-") else []
    env = None if options else {**os.environ, "UNDERTAKER_VERBOSE": "1"}
    with Init("subreaper", [*options, "-r", "TERM:QUIT"], [PYTHON, "-c", FAMILY], env=env) as init:
        main = int(init.expect("ready").split()[1])
        init.send(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGQUIT
    lines = init.stderr.splitlines()
    assert all(line.startswith("undertaker run: ") for line in lines), lines
    text = "\n".join(line.removeprefix("undertaker run: ") for line in lines)
    assert f"pid {init.pid} is a child subreaper" in text
    assert f"as pid {main}; signals go to pid {main}; then drain: " in text
    assert f"forwarding SIGTERM as SIGQUIT to pid {main}" in text
    assert "drain: SIGTERM forwarded; SIGQUIT to what is left, SIGKILL after 10s" in text
    orphan = re.search(r"drain: SIGQUIT to pid (\d+)", text)
    assert orphan, text
    assert f"reaped orphan pid {orphan[1]}: killed by SIGQUIT" in text
    assert f"reaped the command pid {main}: killed by SIGQUIT" in text
    assert text.endswith(f"exiting with status {128 + signal.SIGQUIT}")


def test_verbose_tells_job_control_and_no_drain() -> None:
    """A forwarded TSTP stops the init, SIGCONT resumes the group; --no-drain is announced."""
    code = "import os, time; print('ready', os.getpid(), flush=True); time.sleep(60)"
    with Init("subreaper", ["-v", "--no-drain"], [PYTHON, "-c", code]) as init:
        main = int(init.expect("ready").split()[1])
        init.send(signal.SIGTSTP)
        assert sleep_until(lambda: state(init.pid) == "T", 10)
        init.send(signal.SIGCONT)
        assert sleep_until(lambda: state(main) == "S" and state(init.pid) == "S", 10)
        init.send(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM
    assert "then exit at once (--no-drain)" in init.stderr
    assert "SIGTSTP forwarded: stopping the init too, like a shell job" in init.stderr
    assert f"continued: SIGCONT to process group {main}" in init.stderr
    assert "drain:" not in init.stderr


def test_verbose_tells_a_held_and_a_dropped_signal() -> None:
    """--term-delay holds SIGTERM (said at once), -r INT:0 drops SIGINT (said too)."""
    code = "import time; print('ready', flush=True); time.sleep(60)"
    options = ["-v", "--term-delay", "300ms", "-r", "INT:0"]
    with Init("subreaper", options, [PYTHON, "-c", code]) as init:
        init.expect("ready")
        init.send(signal.SIGINT)
        init.send(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM
    assert "SIGINT dropped (-r ...:0)" in init.stderr
    assert "holding SIGTERM for 0.3s (--term-delay)" in init.stderr
    assert "forwarding SIGTERM to pid" in init.stderr


@needs_namespace
def test_verbose_as_pid1_says_it_cannot_stop() -> None:
    """As PID 1: the reaper line, and a forwarded TSTP stops only the command."""
    code = "import signal; signal.signal(signal.SIGTSTP, lambda *_: print('caught', flush=True))"
    code += "\nprint('ready', flush=True)\nimport sys; sys.stdin.read()"
    with Init("pid1", ["-v"], [PYTHON, "-c", code]) as init:
        init.expect("ready")
        init.send(signal.SIGTSTP)
        init.expect("caught")
        assert init.wait() == 0
    assert "PID 1: orphans of this namespace come here by kernel rule" in init.stderr
    assert "SIGTSTP forwarded: PID 1 cannot stop itself, only the command stops" in init.stderr


def test_without_verbose_nothing_is_said() -> None:
    """The default stays silent (warnings and errors only)."""
    done = run_init("subreaper", [], ["sh", "-c", "sleep 60 & exit 3"])
    assert done.returncode == 3
    assert done.stderr == ""
