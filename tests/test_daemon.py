"""daemonize(): double fork done right, no zombie, adopted by the subreaper or init."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import needs_namespace, run_in_namespace
from undertaker import DaemonError, WaitStatus, write_pid_file
from undertaker.pidfd import pidfd_open, wait_readable
from undertaker.testing import proc_state, sleep_until

# The daemon reports its situation to a file, then waits (bounded) for a stop file.
DAEMON = r"""
import json, os, sys, time
from undertaker import daemonize
pid_file, report, stop = sys.argv[1:4]
returned = daemonize(pid_file=pid_file, umask=0o027, exit_parent=sys.argv[4] == "exit")
if returned:
    print(json.dumps({"returned": returned}), flush=True)
    sys.exit(0)
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
with open(report + ".tmp", "w") as out:
    json.dump({"pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
               "cwd": os.getcwd(), "umask": os.umask(0o027), "fds": fds,
               "stdin": os.readlink("/proc/self/fd/0")}, out)
os.rename(report + ".tmp", report)
deadline = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < deadline:
    time.sleep(0.02)
"""


def _zombie_children() -> set[int]:
    with open(f"/proc/self/task/{os.getpid()}/children") as listing:
        return {int(p) for p in listing.read().split() if proc_state(int(p)) == "Z"}


def _start(tmp_path: Path, mode: str = "exit") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            DAEMON,
            str(tmp_path / "d.pid"),
            str(tmp_path / "report.json"),
            str(tmp_path / "stop"),
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextlib.contextmanager
def _running_daemon(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """Start DAEMON and wait for its report; yield its PID and a pidfd; never leak it."""
    done = _start(tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    pid = int((tmp_path / "d.pid").read_text())
    fd = pidfd_open(pid)
    try:
        assert sleep_until((tmp_path / "report.json").exists, 10)
        yield pid, fd
    finally:
        if proc_state(pid) not in (None, "Z"):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.waitid(os.P_PIDFD, fd, os.WEXITED)
        os.close(fd)


def _reap_adopted(fd: int) -> WaitStatus:
    """The daemon was adopted by the test session (a subreaper): reap it by pidfd."""
    assert wait_readable(fd, 10)
    result = os.waitid(os.P_PIDFD, fd, os.WEXITED)
    assert result is not None
    return WaitStatus.from_waitid(result)


def test_daemon_is_detached_and_adopted_without_zombies(tmp_path: Path) -> None:
    """The daemon runs in its own session, in /, with fds 0-2 only; its parent is us."""
    zombies_before = _zombie_children()
    with _running_daemon(tmp_path) as (pid, fd):
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["pid"] == pid
        assert report["sid"] != pid  # not a session leader: can never get a terminal
        assert report["pgid"] == report["sid"]
        assert report["cwd"] == "/"
        assert report["umask"] == 0o027
        assert report["stdin"] == os.devnull
        assert report["fds"] == [0, 1, 2, 3]  # 3 is the one listdir itself opened
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
        assert int(data[data.rfind(b")") + 2 :].split()[1]) == os.getpid()  # the subreaper
        assert _zombie_children() == zombies_before  # the middle child was reaped
        (tmp_path / "stop").touch()
        assert _reap_adopted(fd) == WaitStatus.exited_with(0)
    assert not (tmp_path / "d.pid").exists()  # removed at exit


def _children() -> set[int]:
    with open(f"/proc/self/task/{os.getpid()}/children") as listing:
        return {int(p) for p in listing.read().split()}


def test_second_daemon_refused_while_first_runs(tmp_path: Path) -> None:
    """A pid file naming a live process makes the next daemonize fail with a message."""
    (tmp_path / "d.pid").write_text(f"{os.getpid()}\n")  # we are alive
    before = _children()
    done = _start(tmp_path)
    assert done.returncode == 1
    assert "already running" in done.stderr
    # The refused daemon exited as an orphan, adopted by us (the subreaper): reap it.
    assert sleep_until(lambda: all(proc_state(p) == "Z" for p in _children() - before), 10)
    for pid in _children() - before:
        os.waitpid(pid, 0)


def test_return_in_parent_gives_the_daemon_pid(tmp_path: Path) -> None:
    """exit_parent=False returns the daemon's PID in the original process."""
    done = _start(tmp_path, mode="return")
    assert done.returncode == 0, done.stderr
    pid = json.loads(done.stdout)["returned"]
    assert int((tmp_path / "d.pid").read_text()) == pid
    fd = pidfd_open(pid)
    try:
        (tmp_path / "stop").touch()
        assert wait_readable(fd, 10)
        os.waitid(os.P_PIDFD, fd, os.WEXITED)
    finally:
        os.close(fd)


@needs_namespace
@pytest.mark.namespace
def test_daemon_parent_is_init_in_a_namespace(tmp_path: Path) -> None:
    """As PID 1 of a fresh namespace we are init: the daemon's parent is 1, no zombie left."""
    driver = f"""
import json, os, subprocess, sys, time
script = {DAEMON!r}
done = subprocess.run([sys.executable, "-c", script, "{tmp_path}/d.pid", "{tmp_path}/r.json",
                       "{tmp_path}/stop", "exit"], capture_output=True, text=True)
pid = int(open("{tmp_path}/d.pid").read())
data = open(f"/proc/{{pid}}/stat", "rb").read()
ppid = int(data[data.rfind(b")") + 2:].split()[1])
zombies = [p for p in os.listdir("/proc") if p.isdigit() and
           open(f"/proc/{{p}}/stat", "rb").read().rsplit(b")", 1)[1].split()[0] == b"Z"]
open("{tmp_path}/stop", "w").close()
os.waitpid(pid, 0)
print(json.dumps({{"rc": done.returncode, "pid": pid, "ppid": ppid, "zombies": zombies}}))
"""
    done = run_in_namespace(driver)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["rc"], result["ppid"], result["zombies"]) == (0, 1, [])


def test_write_pid_file_replaces_stale(tmp_path: Path) -> None:
    """A pid file naming a dead process is stale and replaced atomically."""
    stale = tmp_path / "x.pid"
    stale.write_text("999999999\n")
    write_pid_file(stale)
    assert stale.read_text() == f"{os.getpid()}\n"
    assert os.listdir(tmp_path) == ["x.pid"]  # no temporary left behind
    stale.write_text("1\n")  # init is alive
    with pytest.raises(DaemonError, match="already running"):
        write_pid_file(stale)


# Started from directory A with relative paths and workdir B: the files belong in A.
RELATIVE = r"""
import os, sys, time
from undertaker import daemonize
workdir, stop = sys.argv[1:3]
daemonize(pid_file="rel.pid", stdout="out.log", stderr="err.log", workdir=workdir)
print("to stdout", flush=True)
print("to stderr", file=sys.stderr, flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < deadline:
    time.sleep(0.02)
"""


def test_relative_paths_mean_the_callers_directory(tmp_path: Path) -> None:
    """pid_file, stdout and stderr given relative land where the caller ran, not in workdir."""
    caller, workdir = tmp_path / "A", tmp_path / "B"
    caller.mkdir()
    workdir.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", RELATIVE, str(workdir), str(tmp_path / "stop")],
        cwd=caller,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # Find the daemon wherever its pid file went, so a failing run still stops it.
    (pid_file,) = [d / "rel.pid" for d in (caller, workdir) if (d / "rel.pid").exists()]
    pid = int(pid_file.read_text())
    fd = pidfd_open(pid)
    try:
        assert (done.returncode, done.stderr) == (0, "")
        assert pid_file == caller / "rel.pid"
        assert sleep_until((caller / "err.log").exists, 10)
        assert sleep_until(lambda: (caller / "err.log").read_text() == "to stderr\n", 10)
        assert (caller / "out.log").read_text() == "to stdout\n"
        assert os.readlink(f"/proc/{pid}/cwd") == str(workdir)
        assert os.listdir(workdir) == []
        (tmp_path / "stop").touch()
        assert wait_readable(fd, 10)
        os.waitid(os.P_PIDFD, fd, os.WEXITED)  # adopted by the test session: ours to reap
    finally:
        if proc_state(pid) not in (None, "Z"):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.waitid(os.P_PIDFD, fd, os.WEXITED)
        os.close(fd)
    assert not (caller / "rel.pid").exists()  # the exit handler found it by its absolute path


def test_pid_file_naming_a_zombie_is_stale(tmp_path: Path) -> None:
    """An exited daemon not yet reaped by its parent does not run: its pid file is stale."""
    zombie = subprocess.Popen(["true"])
    try:
        assert sleep_until(lambda: proc_state(zombie.pid) == "Z", 10)
        (tmp_path / "x.pid").write_text(f"{zombie.pid}\n")
        write_pid_file(tmp_path / "x.pid")
        assert (tmp_path / "x.pid").read_text() == f"{os.getpid()}\n"
    finally:
        zombie.wait()


def test_pid_file_naming_a_reused_pid_is_stale(tmp_path: Path) -> None:
    """A live process that started after the file was written did not write it: stale."""
    with subprocess.Popen(["sleep", "30"]) as newer:
        try:
            stale = tmp_path / "x.pid"
            stale.write_text(f"{newer.pid}\n")
            an_hour_ago = time.time() - 3600
            os.utime(stale, (an_hour_ago, an_hour_ago))  # written before `sleep` started
            write_pid_file(stale)
            assert stale.read_text() == f"{os.getpid()}\n"
            stale.write_text(f"{newer.pid}\n")  # written now, by a process that runs
            with pytest.raises(DaemonError, match=f"already running \\(pid {newer.pid}"):
                write_pid_file(stale)
        finally:
            newer.kill()


def test_sigterm_removes_the_pid_file(tmp_path: Path) -> None:
    """SIGTERM (default action) still kills the daemon, and its pid file goes with it."""
    with _running_daemon(tmp_path) as (_pid, fd):
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        assert _reap_adopted(fd) == WaitStatus.killed_by(signal.SIGTERM)
    assert not (tmp_path / "d.pid").exists()


# Each bad call must raise in the caller, before a fork: no child may appear.
BAD_ARGUMENTS = r"""
import json, os
from undertaker import daemonize
out = []
for kwargs in ({"umask": "022"}, {"umask": 0o1777}, {"keep_fds": ["3"]}, {"keep_fds": [-1]},
               {"workdir": None}, {"exit_parent": "no"}):
    try:
        daemonize(**{"exit_parent": False, **kwargs})
        out.append("no error")
    except Exception as err:
        out.append(type(err).__name__)
with open(f"/proc/self/task/{os.getpid()}/children") as kids:
    out.append(kids.read().split())
print(json.dumps(out))
"""


def test_bad_arguments_fail_in_the_caller_before_forking() -> None:
    """A wrong type or range is a TypeError/ValueError at the call, not a dead daemon."""
    done = subprocess.run(
        [sys.executable, "-c", BAD_ARGUMENTS],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == [
        "TypeError",
        "ValueError",
        "TypeError",
        "ValueError",
        "TypeError",
        "TypeError",
        [],
    ]


# Started twice, each time as the first process of a fresh PID namespace: the
# daemon gets the same PID both times, as in a container restarted.
CONTAINER = r"""
import os, subprocess, sys
pid_file, report, stop = sys.argv[1:4]
done = subprocess.run([sys.executable, "-c", sys.argv[4], pid_file, report, stop, "exit"],
                      capture_output=True, text=True)
if done.returncode:
    print("failed", done.stderr.strip())
    sys.exit(0)
pid = int(open(pid_file).read())
open(stop, "w").close()
os.waitpid(pid, 0)
print("started", pid)
"""


@needs_namespace
@pytest.mark.namespace
def test_temporary_left_by_a_crash_does_not_block_a_start(tmp_path: Path) -> None:
    """A `.d.pid.PID.tmp` left behind (a crash while writing) must not block the next start."""
    paths = [str(tmp_path / n) for n in ("d.pid", "r.json", "stop")]
    first = run_in_namespace(CONTAINER, *paths, DAEMON)
    assert first.stdout.split()[0] == "started", first.stdout + first.stderr
    pid = int(first.stdout.split()[1])
    (tmp_path / "stop").unlink()
    (tmp_path / f".d.pid.{pid}.tmp").write_text(f"{pid}\n")  # as if killed mid-write
    second = run_in_namespace(CONTAINER, *paths, DAEMON)
    assert second.stdout.split() == ["started", str(pid)], second.stdout + second.stderr


# A file opened before daemonize(), with output still in its buffer: the daemon
# then opens another file, which gets the lowest free descriptor number.
LIVE_FILE = r"""
import os, sys
from undertaker import daemonize
log_path, data_path, report = sys.argv[1:4]
log = open(log_path, "w")
log.write("before\n")  # buffered, not flushed
pid = daemonize(exit_parent=False)
if pid:
    print(pid)
    sys.exit(0)  # flushes what is left in our copy of the buffer
data = open(data_path, "w")
try:
    log.write("late\n")
    log.flush()
    outcome = "written"
except ValueError:
    outcome = "closed"
data.write("data\n")
data.close()
with open(report + ".tmp", "w") as out:
    out.write(outcome)
os.rename(report + ".tmp", report)
"""


def test_files_open_before_daemonize_are_closed_through_their_objects(tmp_path: Path) -> None:
    """A live file object's descriptor is closed with the object: no write lands elsewhere."""
    log, data, report = (tmp_path / n for n in ("log", "data", "report"))
    done = subprocess.run(
        [sys.executable, "-c", LIVE_FILE, str(log), str(data), str(report)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    fd = pidfd_open(int(done.stdout))  # exited or not, a zombie until we reap it
    try:
        assert wait_readable(fd, 10)
        os.waitid(os.P_PIDFD, fd, os.WEXITED)  # adopted by the test session: ours to reap
    finally:
        os.close(fd)
    assert report.read_text() == "closed"
    assert data.read_text() == "data\n"
    assert log.read_text() == "before\n"  # once: flushed before the fork, not in each process
