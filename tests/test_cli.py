"""The command line on the live system: help, filters, errors, colour, exit codes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from helpers import cli, cli_to_full_disk, needs_namespace, run_in_namespace
from undertaker import __version__
from undertaker.cli import SUBCOMMANDS
from undertaker.proc import scan
from undertaker.testing import ZombieParent, ZombieSpec


@pytest.mark.smoke
def test_version() -> None:
    """--version prints the package version and exits 0."""
    done = cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"undertaker {__version__}"


@pytest.mark.smoke
@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(command: str) -> None:
    """Each subcommand answers --help with a usage line and exit 0."""
    done = cli(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: undertaker {command}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ps", "--pid", "abc"], "not a PID: 'abc'"),
        (["ps", "--pid", "-5"], "not a PID: '-5'"),
        (["ps", "--pid", "0"], "not a PID: '0'"),
        (["ps", "--ppid", "1,x"], "not a PID: 'x'"),
        (["ps", "--pid", "4194304999"], "no such process (pid=4194304999)"),
        (["ps", "--user", "no-such-user-here"], "no such user"),
        (["ps", "--proc", "/nonexistent"], "cannot read /nonexistent"),
        (["ps", "--proc", "/tmp"], "cannot read /tmp: not a procfs"),
        (["status", "--zombie", "1", "--proc", "/etc"], "cannot read /etc: not a procfs"),
        (["tree", "--proc", "/nonexistent"], "cannot read /nonexistent"),
        (["ps", "--bogus"], "unrecognized arguments: --bogus"),
        (["ps", "--pid", "1,2,"], "not a PID: ''"),
        (["ps", "--pid", "1,,2"], "not a PID: ''"),
        (["ps", "--pid", "\u0661"], "not a PID: '\u0661' (ASCII digits only)"),
        (["ps", "--ppid", "\u0661"], "(ASCII digits only)"),
        (["ps", "--user", "\u0661"], "no such user"),
        (["status", "--zombie", "\u0663"], "(ASCII digits only)"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    """Bad input: exit 2, one line on stderr naming the problem, no traceback."""
    done = cli(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "prog"),
    [
        (["ps", "--bogus"], "undertaker ps"),
        (["tree", "-x"], "undertaker tree"),
        (["status", "--nope", "1"], "undertaker status"),
        (["--bogus"], "undertaker"),
    ],
)
def test_unknown_flag_points_to_its_own_help(args: list[str], prog: str) -> None:
    """A subcommand's unknown flag sends the reader to that subcommand's --help."""
    done = cli(*args)
    assert done.returncode == 2
    assert done.stderr.startswith(f"{prog}: error: unrecognized arguments: ")
    assert done.stderr.endswith(f"(see {prog} --help)\n")


def test_pid_list_with_a_missing_pid_reports_the_rest() -> None:
    """--pid 1,999999: PID 1 is reported, the missing one named on stderr; all missing: exit 2."""
    done = cli("ps", "--pid", "1,999999", "--color", "never")
    assert done.returncode == 0, done.stderr
    assert "pid 1 is not a zombie" in done.stdout
    assert done.stderr == "undertaker ps: warning: no such process: 999999\n"
    alone = cli("ps", "--pid", "999999,999998")
    assert (alone.returncode, alone.stdout) == (2, "")
    assert alone.stderr == "undertaker: error: no such process (pid=999998)\n"


@pytest.mark.parametrize("command", [["ps"], ["ps", "--json"], ["tree"], ["status", "0x8b"]])
def test_unwritable_stdout_is_one_line_exit_2(command: list[str]) -> None:
    """> /dev/full: one line naming the failure and exit 2, not a traceback and exit 1."""
    done = cli_to_full_disk(*command)
    assert done.returncode == 2
    assert done.stderr == (
        "undertaker: error: cannot write to standard output: No space left on device\n"
    )


@pytest.mark.parametrize("command", [["ps", "--all"], ["tree"]])
def test_closed_pipe_exits_quietly(command: list[str]) -> None:
    """| head -1 with the reader gone: nothing on stderr, 141 as if killed by SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        done = subprocess.run(
            [sys.executable, "-m", "undertaker", *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_filters_select_our_zombies() -> None:
    """--ppid, --pid and --user narrow the report to what was asked."""
    with ZombieParent([ZombieSpec(code=5)] * 3) as parent:
        rc, doc = _json("ps", "--ppid", str(parent.pid))
        assert rc == 1
        assert sorted(z["pid"] for z in doc["zombies"]) == sorted(parent.zombies)
        one = parent.zombies[1]
        rc, doc = _json("ps", "--pid", str(one))
        assert [z["pid"] for z in doc["zombies"]] == [one]
        rc, doc = _json("ps", "--ppid", str(parent.pid), "--user", "65534")
        assert (rc, doc["zombies"]) == (0, [])
        rc, doc = _json("ps", "--ppid", str(parent.pid), "--user", "root")
        assert len(doc["zombies"]) == 3
        done = cli("ps", "--pid", str(parent.pid), "--color", "never")
        assert done.returncode == 0
        assert f"pid {parent.pid} is not a zombie" in done.stdout


def test_all_json_lists_every_process() -> None:
    """ps --all --json adds a processes list that includes us and our zombies."""
    with ZombieParent([ZombieSpec(code=2)]) as parent:
        _, doc = _json("ps", "--all", "--ppid", str(parent.pid))
        assert [p["pid"] for p in doc["processes"]] == parent.zombies
        _, doc = _json("ps", "--all")
        pids = {p["pid"] for p in doc["processes"]}
        assert {os.getpid(), parent.pid, *parent.zombies} <= pids


def test_colour_only_when_asked_or_on_a_terminal() -> None:
    """Piped output is plain; --color always adds escapes; NO_COLOR turns auto off."""
    with ZombieParent([ZombieSpec(code=1)]) as parent:
        plain = cli("ps", "--ppid", str(parent.pid))
        assert "\x1b[" not in plain.stdout
        forced = cli("ps", "--ppid", str(parent.pid), "--color", "always")
        assert "\x1b[1;31m" in forced.stdout
        tree = cli("tree", "--zombies", "--color", "always")
        assert "\x1b[1;31m" in tree.stdout


def test_tree_on_a_terminal_is_coloured() -> None:
    """Under a pseudo-terminal, auto colour turns on; NO_COLOR turns it off."""
    with ZombieParent([ZombieSpec(code=1)]):
        for env, expect in ((None, True), ({"NO_COLOR": "1"}, False)):
            out = _run_on_pty([sys.executable, "-m", "undertaker", "tree", "-z"], env)
            assert ("\x1b[1;31m" in out) is expect


def _run_on_pty(argv: list[str], env: dict[str, str] | None) -> str:
    master, slave = pty.openpty()
    full_env = dict(os.environ) | (env or {})
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, env=full_env, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(30)
    return b"".join(chunks).decode("utf-8", "replace")


def test_tree_shows_the_path_to_our_zombie() -> None:
    """tree --zombies shows us, the parent and the zombie, nested, plain when piped."""
    with ZombieParent([ZombieSpec(code=9)], name="treeparent") as parent:
        done = cli("tree", "--zombies")
        assert done.returncode == 1
        lines = done.stdout.splitlines()
        mine = [i for i, line in enumerate(lines) if f"{parent.pid} treeparent" in line]
        assert len(mine) == 1
        child = lines[mine[0] + 1]
        assert f"{parent.zombies[0]} treeparent <defunct> exited 9" in child
        assert child.index(str(parent.zombies[0])) > lines[mine[0]].index(str(parent.pid))
        assert any(f"{os.getpid()} " in line for line in lines[: mine[0]])


# Forks and reaps 20 children at a time until stdin closes (10 s at most),
# then exits having reaped all of them: nothing is left behind.
CHURN = """
import os, select, time
end = time.monotonic() + 10
while time.monotonic() < end and not select.select([0], [], [], 0)[0]:
    pids = [os.fork() or os._exit(0) for _ in range(20)]
    for p in pids:
        os.waitpid(p, 0)
"""


def test_scan_survives_churn() -> None:
    """Processes exiting during the scan are skipped; records stay consistent."""
    churn = subprocess.Popen([sys.executable, "-c", CHURN], stdin=subprocess.PIPE)
    try:
        scans = vanished = 0
        while churn.poll() is None and scans < 5000 and not vanished:
            snap = scan(owners=scans % 2 == 0)
            scans += 1
            vanished += snap.vanished
            for proc in snap.zombies:
                assert proc.state == "Z"
            assert snap.processes[os.getpid()].ppid == os.getppid()
        # Seen here within ~10 scans: a churner's child exited between listdir and open.
        assert vanished > 0
    finally:
        assert churn.stdin is not None
        churn.stdin.close()  # the churner stops, reaping its last children
        churn.wait(30)


@needs_namespace
def test_unreadable_entries_are_counted_not_fatal() -> None:
    """Under hidepid, other users' processes are counted unreadable and noted (exit 3)."""
    code = (
        "import subprocess, sys\n"
        "subprocess.run(['mount', '-o', 'remount,hidepid=1', '/proc'], check=True)\n"
        "out = subprocess.run(['setpriv', '--reuid', '65534', '--regid', '65534',"
        " '--clear-groups', sys.executable, '-m', 'undertaker', 'ps', '--json'],"
        " capture_output=True, text=True)\n"
        "print(out.returncode); print(out.stdout)\n"
    )
    done = run_in_namespace(code)
    assert done.returncode == 0, done.stderr
    rc, _, body = done.stdout.partition("\n")
    doc = json.loads(body)
    assert rc == "3"
    assert doc["incomplete"] is True
    assert doc["unreadable"] >= 1  # PID 1 (root) and friends
    assert doc["hidepid"] in ("1", "noaccess")


@needs_namespace
def test_exit_status_unknown_without_ptrace_rights() -> None:
    """An unprivileged user sees root's zombies, but the kernel hides their exit codes."""
    code = (
        "import subprocess, sys\n"
        "from undertaker.testing import ZombieParent, ZombieSpec\n"
        "with ZombieParent([ZombieSpec(code=7)]):\n"
        "    out = subprocess.run(['setpriv', '--reuid', '65534', '--regid', '65534',"
        " '--clear-groups', sys.executable, '-m', 'undertaker', 'ps', '--json'],"
        " capture_output=True, text=True)\n"
        "print(out.stdout)\n"
    )
    done = run_in_namespace(code)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert len(doc["zombies"]) == 1
    assert doc["zombies"][0]["exit"] is None


def _json(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = cli(*args, "--json")
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)
