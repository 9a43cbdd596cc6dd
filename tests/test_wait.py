"""WaitStatus: decoding, the waitid path, zombies' kept statuses, and ``undertaker status``."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

import pytest

from helpers import cli
from undertaker import NoSuchProcess, WaitStatus, zombie_status
from undertaker.testing import ZombieLeader, ZombieParent, ZombieSpec


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
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "undertaker status: error: argument STATUS: not a wait status: '0x7f' "
        "(no process exits, dies or stops that way) (see undertaker status --help)\n"
    )
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


# Forks a child that takes real gid argv[1] and effective and saved gid argv[2]
# (mixed, as a setgid program run by another group has), real uid argv[4] and
# effective and saved uid 65534 (mixed too when argv[4] is not 65534: a setuid
# program), makes itself dumpable again if argv[3] is 1 (setresuid cleared
# it), and exits 7. Prints its PID once it is a zombie, reaps it when stdin closes.
_IDS_ZOMBIE = """
import ctypes, os, sys, time
rgid, egid, dumpable, ruid = (int(a) for a in sys.argv[1:5])
pid = os.fork()
if pid == 0:
    os.setresgid(rgid, egid, egid)
    os.setresuid(ruid, 65534, 65534)
    if dumpable:
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    os._exit(7)
deadline = time.monotonic() + 10
while open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
    assert time.monotonic() < deadline
    time.sleep(0.001)
print(pid, flush=True)
sys.stdin.read()
os.waitpid(pid, 0)
"""

# Reads the zombie's status through the library and ps, as uid 65534 and gid 200.
_READER = """
import sys
from undertaker import AccessDenied, wait_for_exit, zombie_status
from undertaker.census import selector, take_census
from undertaker.cli._style import Style
from undertaker.cli._tree_view import render_tree
from undertaker.proc import scan
pid = int(sys.argv[1])
for call in (zombie_status, wait_for_exit):
    try:
        print(call.__name__, call(pid))
    except AccessDenied:
        print(call.__name__, "denied")
snapshot = scan()
(zombie,) = take_census(snapshot, selector(pids={pid})).zombies
print("ps", zombie.status)
drawing = render_tree(snapshot, Style(False), zombies_only=True).splitlines()
print("tree", next(line for line in drawing if f" {pid} " in line).partition("<defunct>")[2])
"""


def _read_as_other_ids(
    rgid: int, egid: int, dumpable: bool, ruid: int = 65534
) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Read a zombie's status as uid 65534 / gid 200: library and ps lines, then the CLI."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _IDS_ZOMBIE, str(rgid), str(egid), str(int(dumpable)), str(ruid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        zombie = holder.stdout.readline().strip()
        as_other = ["setpriv", "--reuid", "65534", "--regid", "200", "--clear-groups"]
        lib = subprocess.run(
            [*as_other, sys.executable, "-c", _READER, zombie],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert lib.stderr == "", lib.stderr
        done = subprocess.run(
            [*as_other, sys.executable, "-m", "undertaker", "status", "--zombie", zombie],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        assert holder.stdin is not None
        assert holder.stdout is not None
        holder.stdin.close()
        holder.stdout.close()
        holder.wait(30)
    return lib.stdout.splitlines(), done


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set ids")


@needs_root
@pytest.mark.parametrize(
    ("rgid", "dumpable", "ruid"),
    [(100, True, 65534), (200, True, 1000), (200, False, 65534)],
    ids=["setgid-mixed-gids", "setuid-mixed-uids", "same-ids-not-dumpable"],
)
def test_hidden_zombie_status_is_refused_not_exited_0(rgid: int, dumpable: bool, ruid: int) -> None:
    """The kernel writes 0 in place of a hidden code: refuse it, never say "exited 0".

    Read by uid 65534 with gid 200, a zombie of uid 65534 is hidden when its
    real gid (100) differs from its effective and saved gid (200), as for a
    setgid program: the uid alone matches; or when its real uid (1000)
    differs from its effective and saved uid (65534), as for a setuid one.
    It is hidden too, on recent kernels, when its ids all match but it
    stopped being dumpable.
    """
    lib, done = _read_as_other_ids(rgid, egid=200, dumpable=dumpable, ruid=ruid)
    zombie, waited, ps, tree = lib
    assert (zombie, ps, tree) == ("zombie_status denied", "ps None", "tree ")
    # wait_for_exit goes through zombie_status: None, "hidden from us", as documented.
    assert waited == "wait_for_exit None"
    assert done.returncode == 2
    assert done.stdout == ""
    assert "permission denied: reading a zombie's exit status" in done.stderr
    assert len(done.stderr.splitlines()) == 1


@needs_root
def test_zombie_status_readable_when_the_kernel_allows() -> None:
    """The control: same six ids and dumpable, the real exit code is read everywhere."""
    lib, done = _read_as_other_ids(rgid=200, egid=200, dumpable=True)
    assert lib == [
        "zombie_status exited 7",
        "wait_for_exit exited 7",
        "ps exited 7",
        "tree  exited 7",
    ]
    assert done.returncode == 0
    assert done.stdout.split(": ", 1)[1] == "exited 7; shell exit code 7\n"


def test_ptrace_event_stop_from_the_kernel_decodes() -> None:
    """A real PTRACE_EVENT_EXEC stop is 0x4057f, above 0xffff: it decodes, it is not refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    pid = os.fork()
    if pid == 0:  # the tracee: stop for the tracer, then exec
        libc.ptrace(0, 0, None, None)  # PTRACE_TRACEME
        os.kill(os.getpid(), signal.SIGSTOP)
        os.execv("/bin/true", ["true"])  # noqa: S606  (a fixed program)
    try:
        _, first = os.waitpid(pid, 0)
        assert WaitStatus(first) == WaitStatus(0x137F)
        assert libc.ptrace(0x4200, pid, None, 0x10) == 0  # SETOPTIONS, TRACEEXEC
        assert libc.ptrace(7, pid, None, None) == 0  # CONT
        _, raw = os.waitpid(pid, 0)
        assert raw == 0x4057F
        status = WaitStatus(raw)
        assert (status.stopped, status.stop_signal, status.ptrace_event) == (True, 5, 4)
        assert str(status) == "stopped by SIGTRAP (ptrace event exec)"
        assert WaitStatus.parse(hex(raw)) == raw
        assert libc.ptrace(7, pid, None, None) == 0
        _, last = os.waitpid(pid, 0)
        assert WaitStatus(last).exit_code == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass  # already reaped above


@pytest.mark.parametrize("raw", [0x10000, 0x10100, 0x1000000, 0x100FF])
def test_high_bits_outside_a_stop_are_refused(raw: int) -> None:
    """Only a stop carries bits above 0xffff (the ptrace event); anything else is garbage."""
    with pytest.raises(ValueError, match="out of range"):
        WaitStatus(raw)


def test_status_of_a_zombie_leader_is_refused() -> None:
    """A zombie leader shows Z but is alive: its 0 is no exit status, so no "exited 0"."""
    with ZombieLeader() as leader:
        with pytest.raises(NoSuchProcess, match="zombie leader, alive with 1 thread"):
            zombie_status(leader.pid)
        done = cli("status", "--zombie", str(leader.pid))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "undertaker: error: not a zombie: a zombie leader, alive with 1 thread "
        f"(pid={leader.pid})\n"
    )


# Arabic-Indic three, "0x" and Arabic-Indic seven, full-width 139.
@pytest.mark.parametrize("text", ["\u0663", "0x\u0667f", "\uff11\uff13\uff19"])
def test_status_parse_takes_ascii_digits_only(text: str) -> None:
    """int() reads Arabic-Indic and full-width digits; a status is ASCII or refused."""
    with pytest.raises(ValueError, match="ASCII"):
        WaitStatus.parse(text)
    done = cli("status", text)
    assert (done.returncode, done.stdout) == (2, "")
    assert "not a wait status" in done.stderr
