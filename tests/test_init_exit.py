"""``undertaker run``: exit statuses like a shell's, remapping, exec failures."""

from __future__ import annotations

import os
import signal
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import needs_namespace
from init_children.harness import Init, child, run_init

MODE = [pytest.param("pid1", marks=needs_namespace), "subreaper"]


@pytest.fixture(params=MODE)
def mode(request: pytest.FixtureRequest) -> str:
    """Both ways of reaping: PID 1 of a new namespace, and child subreaper."""
    return str(request.param)


def exit_with(code: int) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", f"import os; os._exit({code})"]


def test_all_256_exit_codes_pass_through() -> None:
    """Every exit status 0..255 of the child is the init's exit status."""

    def one(code: int) -> int:
        return run_init("subreaper", [], exit_with(code)).returncode

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(one, range(256)))
    assert got == list(range(256))


@needs_namespace
@pytest.mark.parametrize("code", [0, 1, 2, 42, 126, 127, 128, 143, 254, 255])
def test_exit_codes_pass_through_as_pid1(code: int) -> None:
    """As PID 1 too, the child's exit status is the init's."""
    assert run_init("pid1", [], exit_with(code)).returncode == code


@pytest.mark.parametrize("code", [0, 1, 3, 137, 143, 255])
def test_remap_exit_code_to_zero(code: int) -> None:
    """-e CODE turns CODE into 0; other codes still pass through."""
    assert run_init("subreaper", ["-e", str(code)], exit_with(code)).returncode == 0
    others = [arg for other in (1, 3, 143) if other != code for arg in ("-e", str(other))]
    assert run_init("subreaper", others, exit_with(code)).returncode == code


def test_remap_exit_from_environment() -> None:
    """UNDERTAKER_REMAP_EXIT=CODE,... remaps like -e."""
    env = {**os.environ, "UNDERTAKER_REMAP_EXIT": "7, 9"}
    assert run_init("subreaper", [], exit_with(7), env=env).returncode == 0
    assert run_init("subreaper", [], exit_with(9), env=env).returncode == 0
    assert run_init("subreaper", [], exit_with(8), env=env).returncode == 8


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2])
@pytest.mark.smoke
def test_signal_to_init_gives_128_plus_n(mode: str, signum: int) -> None:
    """TERM, USR1 or USR2 sent to the init kill a default child: status 128+N."""
    code = "import time; print('ready', flush=True); time.sleep(60)"  # EOF must not end it
    with Init(mode, [], [sys.executable, "-c", code]) as init:
        init.expect("ready")
        init.send(signum)
        assert init.wait() == 128 + signum


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT, signal.SIGKILL])
def test_child_killed_by_signal_gives_128_plus_n(mode: str, signum: int) -> None:
    """A child that dies from signal N makes the init exit 128+N (what sh does)."""
    code = f"import os, signal; signal.signal({signum}, signal.SIG_DFL) if {signum} != 9 else 0;"
    code += f"os.kill(os.getpid(), {signum})"
    assert run_init(mode, [], [sys.executable, "-c", code]).returncode == 128 + signum


@pytest.mark.smoke
def test_missing_command_is_127(mode: str) -> None:
    """A command that does not exist: 127 and one line naming it."""
    done = run_init(mode, [], ["/nonexistent/undertaker-test"])
    assert done.returncode == 127
    assert done.stderr.strip() == (
        "undertaker run: error: cannot run '/nonexistent/undertaker-test': "
        "No such file or directory"
    )


def test_command_not_on_path_is_127() -> None:
    """A bare name not found on PATH: 127."""
    assert run_init("subreaper", [], ["undertaker-no-such-command"]).returncode == 127


def test_empty_command_is_127(mode: str) -> None:
    """``run -- ''``: 127 "command not found", as a shell says for an empty name."""
    done = run_init(mode, [], [""])
    assert done.returncode == 127
    assert done.stderr.strip() == "undertaker run: error: cannot run '': command not found"


def test_not_executable_is_126(tmp_path: Path) -> None:
    """A file without the execute bit: 126 and 'Permission denied'."""
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)  # even root needs one execute bit
    done = run_init("subreaper", [], [str(script)])
    assert done.returncode == 126
    assert "Permission denied" in done.stderr


def test_a_directory_is_126(tmp_path: Path) -> None:
    """Executing a directory: 126, like a shell."""
    assert run_init("subreaper", [], [str(tmp_path)]).returncode == 126


def test_child_exit_status_is_kept_after_the_drain(mode: str) -> None:
    """The exit status is the main child's even when leftovers had to be drained."""
    code = "import subprocess, sys; subprocess.Popen(['sleep', '30']); sys.exit(5)"
    done = run_init(mode, ["--grace", "2s"], [sys.executable, "-c", code])
    assert done.returncode == 5


def test_child_argv_is_passed_verbatim() -> None:
    """Options after the command belong to the command."""
    done = run_init("subreaper", [], child("print_args", "-g", "--grace", "x y"))
    assert done.stdout.splitlines() == ["-g", "--grace", "x y"]
