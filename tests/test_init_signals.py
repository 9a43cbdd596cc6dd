"""``undertaker run``: signals reach the child, rewritten, delayed, to the group, on a tty."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import needs_namespace
from init_children.harness import PYTHON, Init, child, end_tree, state
from undertaker.testing import sleep_until

MODE = [pytest.param("pid1", marks=needs_namespace), "subreaper"]
# Every signal a process can catch (a SIGCHLD sent by a user is forwarded too).
CATCHABLE = [s for s in range(1, 32) if s not in (signal.SIGKILL, signal.SIGSTOP)]


@pytest.fixture(params=MODE)
def mode(request: pytest.FixtureRequest) -> str:
    """Both ways of reaping: PID 1 of a new namespace, and child subreaper."""
    return str(request.param)


JOB_CONTROL = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


@pytest.mark.smoke
def test_every_catchable_signal_reaches_the_child(mode: str) -> None:
    """Signals 1..31 (not KILL, STOP) sent to the init are echoed by the child.

    After TSTP, TTIN or TTOU the init stops itself (not as PID 1), so a
    SIGCONT goes with each, and the child echoes that too. INT starts the
    drain: a long grace keeps its SIGKILL away however slow the machine.
    """
    with Init(mode, ["--grace", "1h"], child("print_signals")) as init:
        init.expect("ready child")
        for signum in CATCHABLE:
            init.send(signum)
            assert init.expect("child ") == f"child {signum}"
            if signum in JOB_CONTROL and mode == "subreaper":
                assert sleep_until(lambda: state(init.pid) == "T", 10), state(init.pid)
                init.send(signal.SIGCONT)
                assert init.expect("child ") == f"child {signal.SIGCONT}"
        assert init.wait() == 0


# The main child: its own SIGCHLD consumed, it echoes CHLD and USR1, then frees an
# orphan (adopted by the init) to exit: the init gets the kernel's SIGCHLD for it.
CHLD_WATCHER = """
import os, signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    if os.fork() == 0:
        os.close(w); os.read(r, 1); os._exit(0)
    os._exit(0)
os.close(r)
os.waitpid(middle, 0)
signal.sigtimedwait({signal.SIGCHLD}, 0)  # the kernel's, for the middle: ours, not the init's
for sig in (signal.SIGCHLD, signal.SIGUSR1):
    signal.signal(sig, lambda signum, _: os.write(1, f"child {signum}\\n".encode()))
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
os.close(w)  # the orphan exits now
print("ready", flush=True)
time.sleep(0.5)
print("slept", flush=True)
while os.read(0, 4096):
    pass
"""


@pytest.mark.parametrize(("options", "echoed"), [([], "CHLD"), (["-r", "CHLD:USR1"], "USR1")])
def test_user_sigchld_is_forwarded_and_the_kernels_is_not(
    mode: str, options: list[str], echoed: str
) -> None:
    """A SIGCHLD a user sends (si_code <= 0) is forwarded, rewritten if asked.

    The SIGCHLD the kernel sends when an adopted orphan exits (CLD_EXITED)
    only makes the init reap: the child sees nothing between ready and slept.
    """
    with Init(mode, ["--log-reaped", *options], [PYTHON, "-c", CHLD_WATCHER]) as init:
        assert init.readline() == "ready"
        assert init.readline() == "slept"  # the orphan's exit was not forwarded
        init.send(signal.SIGCHLD)
        assert init.readline() == f"child {signal.Signals['SIG' + echoed]}"
        assert init.wait() == 0
    reaped = [json.loads(line) for line in init.stderr.splitlines()]
    assert [e["main"] for e in reaped if e["event"] == "reaped"] == [False, True]


def test_rewrite_and_drop(mode: str) -> None:
    """--rewrite USR1:USR2 forwards USR2; --rewrite HUP:0 drops HUP."""
    with Init(mode, ["-r", "USR1:USR2", "--rewrite", "HUP:0"], child("print_signals")) as init:
        init.expect("ready child")
        init.send(signal.SIGUSR1)
        assert init.expect("child ") == f"child {signal.SIGUSR2}"
        init.send(signal.SIGHUP)  # dropped: the next line must be WINCH's
        init.send(signal.SIGWINCH)
        assert init.expect("child ") == f"child {signal.SIGWINCH}"
        assert init.wait() == 0


def test_rewrite_extremes_and_identity() -> None:
    """1 and 31 swap; identity rewrites change nothing."""
    options = ["-r", "1:31", "-r", "31:1", "-r", "TERM:TERM"]
    with Init("subreaper", options, child("print_signals")) as init:
        init.expect("ready child")
        init.send(1)
        assert init.expect("child ") == "child 31"
        init.send(31)
        assert init.expect("child ") == "child 1"
        init.send(signal.SIGTERM)
        assert init.expect("child ") == f"child {signal.SIGTERM}"


def test_rewrite_from_environment() -> None:
    """UNDERTAKER_REWRITE works like -r."""
    env = {**os.environ, "UNDERTAKER_REWRITE": "USR2:USR1"}
    with Init("subreaper", [], child("print_signals"), env=env) as init:
        init.expect("ready child")
        init.send(signal.SIGUSR2)
        assert init.expect("child ") == f"child {signal.SIGUSR1}"


@pytest.mark.parametrize("option", ["-g", "env"])
def test_process_group_mode_reaches_the_grandchild(mode: str, option: str) -> None:
    """With -g (or UNDERTAKER_PROCESS_GROUP=1) a grandchild in the group gets the signal."""
    env = {**os.environ, "UNDERTAKER_PROCESS_GROUP": "1"} if option == "env" else None
    options = ["-g"] if option == "-g" else []
    command = child("print_signals", "--grandchild", "--ignore", "USR1")
    with Init(mode, options, command, env=env) as init:
        ready = {init.expect("ready").split()[1] for _ in range(2)}
        assert ready == {"child", "grandchild"}
        init.send(signal.SIGUSR1)
        assert init.expect("grandchild ") == f"grandchild {signal.SIGUSR1}"
        assert init.wait() == 0


def test_without_process_group_the_grandchild_gets_nothing() -> None:
    """Negative control: without -g the same signal stops at the (ignoring) child."""
    command = child("print_signals", "--grandchild", "--ignore", "USR1")
    with Init("subreaper", [], command) as init:
        for _ in range(2):
            init.expect("ready")
        init.send(signal.SIGUSR1)
        init.send(signal.SIGUSR2)  # a marker: USR1 would have arrived before it
        assert init.expect("child ") == f"child {signal.SIGUSR2}"
        assert init.wait() == 0
        assert f"grandchild {signal.SIGUSR1}" not in init.rest()


def test_term_delay_holds_sigterm() -> None:
    """--term-delay 0.6s: SIGTERM reaches the child no sooner than 0.6 s later."""
    with Init("subreaper", ["--term-delay", "600ms"], child("print_signals")) as init:
        init.expect("ready child")
        start = time.monotonic()
        init.send(signal.SIGTERM)
        init.send(signal.SIGUSR1)  # other signals are not held
        assert init.expect("child ") == f"child {signal.SIGUSR1}"
        assert time.monotonic() - start < 0.5
        assert init.expect("child ") == f"child {signal.SIGTERM}"
        assert time.monotonic() - start >= 0.6


def test_term_delay_applies_the_rewrite_after_the_delay() -> None:
    """--rewrite TERM:USR1 --term-delay 0.3s: the child gets USR1, 0.3 s late, never TERM."""
    options = ["--rewrite", "TERM:USR1", "--term-delay", "0.3s"]
    with Init("subreaper", options, child("print_signals")) as init:
        init.expect("ready child")
        start = time.monotonic()
        init.send(signal.SIGTERM)
        assert init.expect("child ") == f"child {signal.SIGUSR1}"
        assert time.monotonic() - start >= 0.3
        assert init.wait() == 0
        assert f"child {signal.SIGTERM}" not in init.rest()


def test_term_delay_with_term_dropped_sends_nothing_and_does_not_drain() -> None:
    """--rewrite TERM:0 --term-delay: SIGTERM is dropped after the delay, and no drain starts.

    A drain would SIGKILL the child once the 0.3 s grace period is over; the
    child must still answer a marker signal well after that.
    """
    options = ["--rewrite", "TERM:0", "--term-delay", "0.2s", "--grace", "0.3s"]
    with Init("subreaper", options, child("print_signals")) as init:
        init.expect("ready child")
        init.send(signal.SIGTERM)
        time.sleep(1.0)  # delay + grace, with room to spare
        init.send(signal.SIGUSR2)  # the marker: the next line, and no TERM before it
        assert init.expect("child ") == f"child {signal.SIGUSR2}"
        assert init.wait() == 0


@pytest.mark.smoke
def test_signal_mask_and_ignored_set_pass_through() -> None:
    """Signals the init inherited blocked or ignored are blocked or ignored in the child."""
    ignored = [signal.SIGINT, signal.SIGTTOU, signal.SIGUSR2]
    blocked = [signal.SIGTTIN, signal.SIGILL, signal.SIGTERM]
    launcher = (
        "import os, signal, sys\n"
        f"for s in {[int(s) for s in ignored]}: signal.signal(s, signal.SIG_IGN)\n"
        f"signal.pthread_sigmask(signal.SIG_BLOCK, {[int(s) for s in blocked]})\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'undertaker', 'run', '--',"
        " 'grep', '^Sig', '/proc/self/status'])\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", launcher], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(":\t") for line in done.stdout.splitlines())
    sig_blk, sig_ign = int(fields["SigBlk"], 16), int(fields["SigIgn"], 16)
    assert sig_blk == sum(1 << (s - 1) for s in blocked)
    for signum in ignored:
        assert sig_ign & (1 << (signum - 1)), signal.Signals(signum).name
    # SIGPIPE and SIGXFSZ: Python ignores them for itself; the child gets the default.
    assert not sig_ign & (1 << (signal.SIGPIPE - 1))


def test_default_signal_state_in_the_child() -> None:
    """From a clean parent, the child has nothing blocked and nothing ignored."""
    done = subprocess.run(
        [PYTHON, "-m", "undertaker", "run", "--", "grep", "^Sig", "/proc/self/status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        restore_signals=True,
    )
    fields = dict(line.split(":\t") for line in done.stdout.splitlines())
    assert int(fields["SigBlk"], 16) == 0
    assert int(fields["SigIgn"], 16) == 0


def test_pdeathsig_fires_when_the_parent_dies(tmp_path: Path) -> None:
    """--pdeathsig USR1: when the init's parent dies, the child receives USR1."""
    out = tmp_path / "out"
    middle = (
        "import subprocess, sys, time\n"
        f"out = open({str(out)!r}, 'w')\n"
        "p = subprocess.Popen(sys.argv[1:], stdout=out)\n"  # stdin: the test's pipe
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    argv = [PYTHON, "-c", middle, PYTHON, "-m", "undertaker", "run", "-p", "USR1", "--",
            *child("print_signals")]  # fmt: skip
    parent = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    init_pid = int(parent.stdout.readline())
    try:
        assert sleep_until(lambda: "ready child" in out.read_text(), 10)
        parent.kill()  # our own child, by PID: the init loses its parent
        parent.wait()
        assert sleep_until(lambda: f"child {signal.SIGUSR1}" in out.read_text(), 10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        assert parent.stdin is not None
        assert parent.stdout is not None
        parent.stdin.close()  # the child reads EOF and exits
        parent.stdout.close()
        # The init was re-parented to this test process (the session's subreaper).
        _, status = os.waitpid(init_pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _pty_read_until(fd: int, needle: bytes | re.Pattern[bytes], timeout: float = 10.0) -> bytes:
    """Read the terminal until *needle* (bytes or a regex) shows up; return all read."""
    pattern = needle if isinstance(needle, re.Pattern) else re.compile(re.escape(needle))
    seen = b""
    deadline = time.monotonic() + timeout
    while not pattern.search(seen):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"{needle!r} not seen; got {seen!r}")
        try:
            seen += os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other end is gone
            break
    return seen


def test_ctrl_z_and_fg_under_a_pseudo_terminal() -> None:
    """In an interactive shell, Ctrl-Z stops the child and the init; fg resumes both."""
    shell_pid, fd = pty.fork()
    if shell_pid == 0:  # pragma: no cover  (the shell side)
        env = {"PATH": os.environ["PATH"], "PS1": "$ ", "TERM": "dumb", "HOME": "/"}
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)  # noqa: S606
    try:
        _pty_read_until(fd, b"$ ")
        code = "import os; print('ready', os.getpid(), flush=True); input(); print('bye')"
        os.write(fd, f'{PYTHON} -m undertaker run -- {PYTHON} -c "{code}"\n'.encode())
        ready = _pty_read_until(fd, re.compile(rb"ready (\d+)\r?\n"))
        child_pid = int(re.findall(rb"ready (\d+)\r?\n", ready)[0])
        init_pid = int(Path(f"/proc/{child_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.write(fd, b"\x1a")  # Ctrl-Z
        _pty_read_until(fd, b"$ ")
        assert sleep_until(lambda: state(child_pid) == "T" and state(init_pid) == "T", 10), (
            state(child_pid),
            state(init_pid),
        )
        os.write(fd, b"fg\n")
        assert sleep_until(lambda: state(child_pid) == "S" and state(init_pid) == "S", 10), (
            state(child_pid),
            state(init_pid),
        )
        os.write(fd, b"\n")  # the child reads the terminal: it is in the foreground again
        _pty_read_until(fd, b"bye")
        os.write(fd, b"exit\n")
    finally:
        end_tree(shell_pid)
        os.close(fd)


def test_the_terminal_goes_back_to_the_callers_group_on_exit() -> None:
    """``sh -c 'undertaker run -- true; read x'`` on a terminal: the shell can still read it.

    The init hands the terminal's foreground to the child's group; if it
    exits leaving it there, the (non-interactive, orphaned-group) shell gets
    EIO from ``read`` and the status is 1.
    """
    script = f'{PYTHON} -m undertaker run -- true; read x; echo "rc=$? x=$x"'
    shell_pid, fd = pty.fork()
    if shell_pid == 0:  # pragma: no cover  (the shell side)
        os.execvp("sh", ["sh", "-c", script])  # noqa: S606
    try:
        os.write(fd, b"hello\n")  # buffered by the terminal until someone reads
        seen = _pty_read_until(fd, re.compile(rb"rc=\d+ x=\w*\r?\n"))
        assert b"rc=0 x=hello" in seen, seen
    finally:
        end_tree(shell_pid)
        os.close(fd)
