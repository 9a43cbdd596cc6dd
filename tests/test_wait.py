"""WaitStatus: decoding, the waitid path, zombies' kept statuses, and ``undertaker status``."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from helpers import cli
from undertaker import NoSuchProcess, WaitStatus, zombie_status
from undertaker.testing import ZombieParent, ZombieSpec


def _real_child(script: str) -> tuple[int, os.waitid_result]:
    """Run ``sh -c script``; return waitpid's raw status and waitid's view of the same exit."""
    first = subprocess.Popen(["sh", "-c", script])
    second = subprocess.Popen(["sh", "-c", script])
    _, raw = os.waitpid(first.pid, 0)
    result = os.waitid(os.P_PID, second.pid, os.WEXITED)
    first.returncode = second.returncode = 0  # reaped by hand above
    assert result is not None
    return raw, result


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("raw", "text", "shell"),
    [
        (0x8B, "killed by SIGSEGV (core dumped); shell exit code 139", 139),
        (0x0300, "exited 3; shell exit code 3", 3),
        (0x0009, "killed by SIGKILL; shell exit code 137", 137),
        (0x137F, "stopped by SIGSTOP", 147),
        (0xFFFF, "continued", 0),
    ],
)
def test_describe_and_shell_code(raw: int, text: str, shell: int) -> None:
    """Each kind of status reads like a person would say it, with the shell's number."""
    status = WaitStatus(raw)
    assert text == status.describe()
    assert shell == status.shell_code


@pytest.mark.smoke
def test_flags_of_a_core_dump() -> None:
    """0x8b is signaled, SIGSEGV, core dumped, returncode -11, and equal to the int."""
    status = WaitStatus(0x8B)
    assert (status.signaled, status.term_signal, status.core_dumped) == (True, 11, True)
    assert (status.exited, status.exit_code, status.stopped, status.continued) == (
        False,
        None,
        False,
        False,
    )
    assert status.returncode == -11
    assert status == 0x8B
    assert status == WaitStatus.killed_by(signal.SIGSEGV, core_dumped=True)
    assert status != 0x8C
    assert hash(status) == hash(0x8B)


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("text", "raw"), [("0x8b", 0x8B), ("139", 139), ("0o213", 0o213), ("0139", 139)]
)
def test_parse_accepts_decimal_hex_octal(text: str, raw: int) -> None:
    """Statuses come as printed by C (hex) or Python (decimal); both parse."""
    assert WaitStatus.parse(text) == raw


@pytest.mark.parametrize("text", ["0x10000", "-1", "sigsegv", ""])
def test_parse_rejects_garbage(text: str) -> None:
    """Out-of-range or non-numeric input is a ValueError, not a wrong answer."""
    with pytest.raises(ValueError, match=r".+"):
        WaitStatus.parse(text)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("exit 0", WaitStatus.exited_with(0)),
        ("exit 42", WaitStatus.exited_with(42)),
        ("kill -TERM $$", WaitStatus.killed_by(signal.SIGTERM)),
        ("kill -KILL $$", WaitStatus.killed_by(signal.SIGKILL)),
    ],
)
def test_waitid_and_waitpid_agree(script: str, expected: WaitStatus) -> None:
    """The siginfo waitid returns packs into the same number waitpid gives."""
    raw, result = _real_child(script)
    assert expected == raw
    assert expected == WaitStatus.from_waitid(result)


def test_zombie_status_reads_the_kept_exit_code() -> None:
    """A zombie's status is readable from /proc until its parent reaps it."""
    with ZombieParent([ZombieSpec(code=7), ZombieSpec(signal=signal.SIGTERM)]) as parent:
        exited, killed = parent.zombies
        assert zombie_status(exited) == WaitStatus.exited_with(7)
        assert zombie_status(killed) == WaitStatus.killed_by(signal.SIGTERM)
        with pytest.raises(NoSuchProcess, match="not a zombie"):
            zombie_status(parent.pid)


@pytest.mark.smoke
def test_cli_status_prints_the_issue_example() -> None:
    """``undertaker status 0x8b`` prints exactly the line the issue asks for."""
    done = cli("status", "0x8b")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "killed by SIGSEGV (core dumped); shell exit code 139\n"


def test_cli_status_several_and_json() -> None:
    """Several values give one line each; --json gives one object each."""
    done = cli("status", "139", "0x300")
    assert done.stdout.splitlines() == [
        "killed by SIGSEGV (core dumped); shell exit code 139",
        "exited 3; shell exit code 3",
    ]
    done = cli("status", "--json", "0x8b")
    assert '"signal_name": "SIGSEGV"' in done.stdout
    assert '"shell_code": 139' in done.stdout


def test_cli_status_zombie() -> None:
    """--zombie PID decodes the status the zombie keeps."""
    with ZombieParent([ZombieSpec(code=3)]) as parent:
        (zombie,) = parent.zombies
        done = cli("status", "--zombie", str(zombie))
    assert done.stdout == f"{zombie}: exited 3; shell exit code 3\n"


def test_lone_0x7f_is_no_stop() -> None:
    """0x7f would be "stopped by signal 0": no such stop exists, so it is unknown."""
    status = WaitStatus(0x7F)
    assert (status.stopped, status.stop_signal, status.exited, status.signaled) == (
        False,
        None,
        False,
        False,
    )
    done = cli("status", "0x7f")
    assert (done.returncode, done.stdout) == (0, "unknown status 0x7f\n")
    assert WaitStatus(0x137F).stopped  # a real stop (SIGSTOP) still is one


def test_cli_status_zombie_with_unreadable_proc() -> None:
    """--proc pointing nowhere says so, in the same words as ``ps``, not "no such process"."""
    status = cli("status", "--zombie", "1", "--proc", "/nonexistent")
    ps = cli("ps", "--proc", "/nonexistent")
    assert status.returncode == ps.returncode == 2
    assert (
        status.stderr
        == ps.stderr
        == ("undertaker: error: cannot read /nonexistent: No such file or directory\n")
    )


@pytest.mark.parametrize("args", [(), ("nope",), ("--zombie", "1")])
def test_cli_status_errors_are_one_line(args: tuple[str, ...]) -> None:
    """Bad input exits 2 with one line on stderr (PID 1 is no zombie)."""
    done = cli("status", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
