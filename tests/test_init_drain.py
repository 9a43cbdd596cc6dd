"""``undertaker run``'s drain: shutdown helpers are spared, the stop signal, ``--no-drain``."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from helpers import needs_namespace
from init_children.harness import PYTHON, Init, child, state

MODE = [pytest.param("pid1", marks=needs_namespace), "subreaper"]


@pytest.fixture(params=MODE)
def mode(request: pytest.FixtureRequest) -> str:
    """Both ways of reaping: PID 1 of a new namespace, and child subreaper."""
    return str(request.param)


def hook(mark: Path, delay: float, how: str, where: str) -> list[str]:
    """A process whose SIGTERM handler runs ``sleep DELAY; echo done > MARK``."""
    return child("shutdown_hook", str(mark), f"{delay:g}", how, where)


@pytest.mark.parametrize("how", ["wait", "leave"])
def test_a_helper_run_by_a_drained_process_finishes_within_the_grace(
    mode: str, how: str, tmp_path: Path
) -> None:
    """An adopted worker gets SIGTERM from the drain and runs a 2 s helper (sh + sleep).

    The helper appears after the worker was told to stop, so the drain's
    later passes (every 250 ms) leave it alone: the file gets written, and
    the init exits when the helper is done, without a SIGKILL. ``leave``:
    the worker exits at once, so the helper is re-parented to the init.
    """
    mark = tmp_path / "flushed"
    with Init(mode, ["--grace", "5s"], hook(mark, 2, how, "orphan")) as init:
        init.expect("ready")
        start = time.monotonic()
        code = init.wait()  # stdin closed: the main child exits, the drain starts
        elapsed = time.monotonic() - start
    assert code == 0, init.stderr
    assert mark.read_text() == "done\n"
    assert "SIGKILL" not in init.stderr
    assert 1.9 <= elapsed < 4.9, elapsed


def test_a_helper_the_command_leaves_behind_after_sigterm_finishes(
    mode: str, tmp_path: Path
) -> None:
    """SIGTERM forwarded to the command, whose handler starts a helper and exits at once."""
    mark = tmp_path / "flushed"
    with Init(mode, ["--grace", "5s"], hook(mark, 2, "leave", "main")) as init:
        init.expect("ready")
        init.send(signal.SIGTERM)
        code = init.wait()
    assert code == 0, init.stderr
    assert mark.read_text() == "done\n"
    assert "SIGKILL" not in init.stderr


def test_a_spared_helper_still_gets_sigkill_at_the_end_of_the_grace(tmp_path: Path) -> None:
    """Spared from SIGTERM, not from the deadline: a 30 s helper dies after 1 s of grace."""
    mark = tmp_path / "flushed"
    with Init("subreaper", ["--grace", "1s"], hook(mark, 30, "wait", "orphan")) as init:
        init.expect("ready")
        start = time.monotonic()
        code = init.wait()
        elapsed = time.monotonic() - start
    assert code == 0
    assert not mark.exists()
    assert "still running 1s after SIGTERM; sending SIGKILL" in init.stderr
    assert 0.9 <= elapsed < 4, elapsed


# The main child and an adopted orphan both echo the signals they get; the
# orphan is ready (handlers installed) before the main child says so.
ECHO_FAMILY = """
import os, signal, sys
def echo(role):
    handler = lambda signum, _: os.write(1, f"{role} {signum}\\n".encode())
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGQUIT):
        signal.signal(sig, handler)
ready_r, ready_w = os.pipe()
middle = os.fork()
if middle == 0:
    if os.fork() == 0:
        os.close(0)
        echo("orphan")
        os.write(ready_w, b"x")
        while True:
            signal.pause()
    os._exit(0)
os.waitpid(middle, 0)
os.read(ready_r, 1)
echo("child")
print("ready", flush=True)
while True:
    signal.pause()
"""


@pytest.mark.parametrize(
    ("rewrite", "number", "name"), [("USR1", 10, "SIGUSR1"), ("QUIT", 3, "SIGQUIT")]
)
def test_a_rewritten_term_is_the_stop_signal_of_the_drain(
    mode: str, rewrite: str, number: int, name: str
) -> None:
    """``-r TERM:X``: the command gets X, the drain sends X to the orphan, the warning says X.

    TERM still means "stop": the drain starts and, the grace over, SIGKILLs
    whoever did not stop on X (both here), so the status is 137.
    """
    with Init(
        mode, ["-r", f"TERM:{rewrite}", "--grace", "1s"], [PYTHON, "-c", ECHO_FAMILY]
    ) as init:
        init.expect("ready")
        init.send(signal.SIGTERM)
        got = {init.readline(), init.readline()}
        assert init.wait() == 128 + signal.SIGKILL
    assert got == {f"child {number}", f"orphan {number}"}
    assert f"2 processes still running 1s after {name}; sending SIGKILL" in init.stderr
    assert "SIGTERM" not in init.stderr


def test_term_dropped_means_no_stop_signal_only_the_deadline(tmp_path: Path) -> None:
    """``-r TERM:0``: the drain (the command exited) sends nothing, then SIGKILL, and says so."""
    mark = tmp_path / "flushed"
    with Init(
        "subreaper", ["-r", "TERM:0", "--grace", "1s"], hook(mark, 0, "wait", "orphan")
    ) as init:
        init.expect("ready")
        assert init.wait() == 0
    assert not mark.exists()  # the worker never got a SIGTERM to run its hook
    assert "1 process still running 1s into the drain (-r TERM:0: no stop signal sent)" in (
        init.stderr
    )


LEAVE_A_TERM_RECORDER = """
import os, signal, sys
mark = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    os.close(0)
    def on_term(_signum, _frame):
        open(mark, "w").write("TERM")
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    os.write(1, f"leftover {os.getpid()}\\n".encode())
    null = os.open(os.devnull, os.O_RDWR)  # or the init's pipes would stay open
    os.dup2(null, 1)
    os.dup2(null, 2)
    while True:
        signal.pause()
while os.read(0, 4096):
    pass
"""


@pytest.mark.parametrize("how", [["--no-drain"], ["UNDERTAKER_DRAIN=0"]])
def test_no_drain_exits_with_the_command_and_leaves_the_rest_alone(
    how: list[str], tmp_path: Path
) -> None:
    """``--no-drain`` (or ``UNDERTAKER_DRAIN=0``): tini's behaviour.

    The init exits as soon as the command does, although a setsid leftover
    is still running and the grace is 20 s; the leftover got no SIGTERM. As
    a subreaper the leftover is then ours (the test session's): we end it.
    """
    mark = tmp_path / "termed"
    options = how if how[0].startswith("-") else []
    env = {**os.environ, how[0].split("=")[0]: "0"} if not options else None
    command = [PYTHON, "-c", LEAVE_A_TERM_RECORDER, str(mark)]
    with Init("subreaper", [*options, "--grace", "20s"], command, env=env) as init:
        leftover = int(init.expect("leftover").split()[1])
        pidfd = os.pidfd_open(leftover)
        try:
            start = time.monotonic()
            assert init.wait() == 0
            assert time.monotonic() - start < 3
            assert state(leftover) == "S"  # alive, and not told to stop
            assert not mark.exists()
        finally:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
            os.close(pidfd)


@needs_namespace
@pytest.mark.parametrize(("options", "termed"), [([], True), (["--no-drain"], False)])
def test_no_drain_as_pid1_leaves_the_leftover_to_the_kernel(
    options: list[str], termed: bool, tmp_path: Path
) -> None:
    """As PID 1 with ``--no-drain`` the leftover gets no SIGTERM: the kernel's SIGKILL ends it.

    The control without the option: the drain's SIGTERM runs its handler.
    """
    mark = tmp_path / "termed"
    command = [PYTHON, "-c", LEAVE_A_TERM_RECORDER, str(mark)]
    with Init("pid1", [*options, "--log-reaped"], command) as init:
        init.expect("leftover")
        assert init.wait() == 0
    assert mark.exists() == termed
    summary = json.loads(init.stderr.splitlines()[-1])
    assert summary["drained"] == (1 if termed else 0)
