"""``undertaker why``: each cause of an unreaped zombie, created for real, gets its verdict."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from helpers import AS_NOBODY, UNDERTAKER, cli, needs_namespace, run_in_namespace
from undertaker.census import take_census
from undertaker.cli._style import Style
from undertaker.cli._why_json import explanation_json
from undertaker.cli._why_view import render_explanation
from undertaker.diagnose import Explanation, ParentReport, explain, gather
from undertaker.diagnose._verdict import diagnose
from undertaker.proc import scan
from undertaker.testing import ZombieLeader, ZombieParent, ZombieSpec, proc_state, sleep_until
from why_scenarios import Scenario, Tracer, named_cgroup, send_signal, wait_state


def why(*args: str) -> tuple[int, str, dict[str, Any]]:
    """Run ``why`` twice, as text and as JSON; return the status, the text and the document."""
    text = cli("why", *args)
    doc = cli("why", *args, "--json")
    assert text.stderr == doc.stderr == ""
    assert text.returncode == doc.returncode
    return text.returncode, text.stdout, json.loads(doc.stdout)


def parent_of(doc: dict[str, Any], pid: int) -> dict[str, Any]:
    """The parent object for *pid* in a ``why --json`` document."""
    found = [p for p in doc["parents"] if p["pid"] == pid]
    assert len(found) == 1, doc
    return found[0]


def check(pid: int, zombies: list[int], verdict: str) -> tuple[str, dict[str, Any]]:
    """``why`` on *pid* gives *verdict* in text and JSON, lists the zombies, exits 1."""
    status, text, doc = why(str(pid))
    assert status == 1
    assert f"verdict        {verdict}:" in text
    parent = parent_of(doc, pid)
    assert parent["verdict"] == verdict
    assert sorted(z["pid"] for z in parent["zombies"]) == sorted(zombies)
    assert parent["fixes"], "every verdict on a live parent comes with fixes"
    return text, parent


def test_default_sigchld_sleeping() -> None:
    """A parent with SIGCHLD at default, asleep in read(), never waits."""
    with Scenario("default") as parent:
        text, doc = check(parent.pid, parent.zombies, "default-never-waits")
    assert doc["sigchld"] == {"disposition": "default", "blocked_threads": 0, "pending": False}
    assert doc["syscall"]["name"] == "read"
    assert doc["reaped_before"] is False
    assert "SIGCHLD        default" in text
    assert "in read()" in text
    # A Python parent whose zombies carry its own name: the fix is to join them.
    assert doc["forked_without_exec"] == 3
    assert doc["runtime"] == "python"
    assert "runtime        python" in text
    assert "join" in doc["fixes"][0]["summary"]


def test_handler_not_reaping() -> None:
    """A SIGCHLD handler that never calls wait: caught, and the kernel counts no reaped child."""
    with Scenario("handler-noreap") as parent:
        text, doc = check(parent.pid, parent.zombies, "handler-not-reaping")
    assert doc["sigchld"]["disposition"] == "caught"
    assert "SIGCHLD" in doc["signals"]["caught"]["names"]
    assert "caught         SIGINT, SIGCHLD" in text
    assert doc["reaped_before"] is False


def test_handler_reaping_once_per_signal() -> None:
    """A handler that reaps one child per signal loses coalesced ones under a burst."""
    with Scenario("handler-once", count=30) as parent:
        # 30 exits while SIGCHLD was blocked merge into one pending signal: one reap.
        assert len(parent.reaped) == 1
        assert len(parent.zombies) == 29
        text, doc = check(parent.pid, parent.zombies, "handler-loses-signals")
    assert doc["reaped_before"] is True
    assert "reaped before  yes" in text
    kinds = [f["how"] for f in doc["fixes"]]
    assert "os.waitpid(-1, os.WNOHANG)" in kinds[0]  # forked children: a reaping loop
    assert f"undertaker reap --method nudge --parent {parent.pid}" in kinds


def test_sigchld_blocked() -> None:
    """SIGCHLD blocked in the only thread, and pending: nothing runs to reap."""
    with Scenario("blocked") as parent:
        text, doc = check(parent.pid, parent.zombies, "sigchld-blocked")
    assert doc["sigchld"]["blocked_threads"] == 1
    assert doc["sigchld"]["pending"] is True
    assert doc["signals"]["blocked"]["names"] == ["SIGCHLD", "SIGRTMIN+3"]
    assert "blocked        SIGCHLD, SIGRTMIN+3 (main thread)" in text
    assert "one pending" in text
    assert not any("nudge" in f["how"] for f in doc["fixes"])
    # A Python parent gets Python code.
    assert doc["fixes"][0]["how"].startswith("signal.pthread_sigmask(signal.SIG_UNBLOCK")
    assert "Python: unblock SIGCHLD" in text


def test_sig_ign_set_after_the_zombies() -> None:
    """SIG_IGN set late: the kernel does not reap the zombies that already existed."""
    with Scenario("ign-late") as parent:
        # This kernel's own answer: setting SIG_IGN reaped none of the existing zombies.
        assert len(parent.zombies) == 3
        text, doc = check(parent.pid, parent.zombies, "sigchld-ignored-late")
    assert doc["sigchld"]["disposition"] == "ignored"
    assert "retroactively" in text
    assert not any("nudge" in f["how"] for f in doc["fixes"])
    # A Python parent gets Python code: SIG_IGN, then one drain of the earlier zombies.
    how = doc["fixes"][0]["how"]
    assert how.startswith("signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n")
    assert "os.waitpid(-1, os.WNOHANG)" in how
    assert "Python: set SIG_IGN before the first fork" in text


def test_parent_stopped() -> None:
    """A parent stopped by SIGSTOP runs no code; the first fix is SIGCONT."""
    with Scenario("default") as parent:
        send_signal(parent.pid, signal.SIGSTOP)
        try:
            wait_state(parent.pid, "T")
            text, doc = check(parent.pid, parent.zombies, "parent-stopped")
        finally:
            send_signal(parent.pid, signal.SIGCONT)
    assert doc["state"] == "T"
    assert doc["fixes"][0]["how"] == f"kill -CONT {parent.pid}"
    assert "T (stopped)" in text


def test_parent_traced() -> None:
    """A parent held by a tracer we start: the tracer's PID and name, and no ptrace remedy."""
    with Scenario("default") as parent:
        tracer = Tracer(parent.pid)
        try:
            comm = Path(f"/proc/{tracer.proc.pid}/comm").read_text().strip()
            text, doc = check(parent.pid, parent.zombies, "parent-traced")
        finally:
            tracer.close()
    assert doc["tracer"] == {"pid": tracer.proc.pid, "comm": comm}
    assert f"tracer         {tracer.proc.pid} (" in text
    assert doc["fixes"][0]["how"] == f"kill {tracer.proc.pid}"
    assert not any("--method ptrace" in f["how"] for f in doc["fixes"])


# posix_spawn is a vfork: the parent sleeps in D until the child calls exec,
# and the child first opens the FIFO, which blocks until the test opens it to write.
_VFORK_PARENT = r"""
import os, sys
kids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os._exit(4)
    kids.append(pid)
print(" ".join(map(str, kids)), flush=True)
spawn = [(os.POSIX_SPAWN_OPEN, 3, sys.argv[1], os.O_RDONLY, 0)]
kids.append(os.posix_spawn("/bin/true", ["true"], {}, file_actions=spawn))
for pid in kids:
    os.waitpid(pid, 0)
"""


def test_parent_uninterruptible_in_a_vfork(tmp_path: Path) -> None:
    """A parent in D (waiting for its vfork child to exec): no ptrace remedy, the call named."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    parent = subprocess.Popen(
        [sys.executable, "-c", _VFORK_PARENT, str(fifo)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    try:
        zombies = [int(p) for p in parent.stdout.readline().split()]
        assert sleep_until(lambda: all(proc_state(z) == "Z" for z in zombies), 10)
        wait_state(parent.pid, "D")
        text, doc = check(parent.pid, zombies, "parent-uninterruptible")
    finally:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the child may go on to exec
        parent.wait(30)
        parent.stdout.close()
    assert doc["state"] == "D"
    assert doc["syscall"]["name"] in ("clone3", "clone", "vfork")
    assert doc["wchan"]
    assert "D (uninterruptible sleep)" in text
    assert "a vfork" in doc["reason"]
    assert doc["fixes"][0]["how"] == f"cat /proc/{parent.pid}/stack"
    assert not any("--method ptrace" in f["how"] for f in doc["fixes"])


@needs_namespace
def test_parent_is_pid_1_of_a_namespace() -> None:
    """PID 1 of a private PID namespace that does not reap: the container fixes are named."""
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    with Scenario("default", prefix=prefix) as parent:
        assert parent.inner_pid == 1
        status, text, doc = why(str(parent.pid))
    assert status == 1
    found = parent_of(doc, parent.pid)
    assert found["verdict"] == "namespace-init-not-reaping"
    assert found["namespace_init"] is True
    assert found["nspid"] == [parent.pid, 1]
    assert [z["nspid"][-1] for z in found["zombies"]] == parent.zombies
    hows = "\n".join(f["how"] for f in found["fixes"])
    for fix in (
        'ENTRYPOINT ["undertaker", "run", "--"]',
        "docker run --init",
        "shareProcessNamespace",
    ):
        assert fix in hows
    assert "PID 1 of its namespace" in text
    assert "verdict        namespace-init-not-reaping:" in text


def test_zombie_leader_with_a_live_thread() -> None:
    """A zombie leader is alive: its own verdict, no fixes, exit 1."""
    with ZombieLeader() as leader:
        status, text, doc = why(str(leader.pid))
    assert status == 1
    assert doc["parents"] == []
    [found] = doc["zombie_leaders"]
    assert found["pid"] == leader.pid
    assert found["verdict"] == "zombie-leader"
    assert found["live_threads"] == 1
    assert "is a zombie leader" in text
    assert "verdict        zombie-leader" in text


def test_parent_exits_during_the_diagnosis() -> None:
    """The parent exits between the scan and the reads: the verdict says so in text and
    JSON, with no stale evidence."""
    with ZombieParent([ZombieSpec(code=3)] * 2) as parent:
        snapshot = scan()
        census = take_census(snapshot, lambda p: p.ppid == parent.pid)
        [group] = census.parents
        parent.close()  # it reaps its zombies and exits, here, mid-diagnosis
        evidence = gather(group)
    assert evidence.gone is True
    assert evidence.status is None
    found = Explanation(census, [ParentReport(evidence, diagnose(evidence))], [], [])
    text = render_explanation(found, Style(enabled=False), time.time())
    doc = parent_of(explanation_json(found), parent.pid)
    assert "verdict        parent-exited: the parent exited while it was examined" in text
    assert "  state " not in text  # no evidence row from a process that is gone
    expected = ("parent-exited", True, None, None)
    assert (doc["verdict"], doc["gone"], doc["state"], doc["sigchld"]) == expected
    assert doc["fixes"] == [
        {"kind": "operational", "summary": "look again: the zombies have a new parent",
         "how": "undertaker why"}
    ]  # fmt: skip


def test_zombie_in_a_container_cgroup() -> None:
    """A parent in a real cgroup named as Docker names a container's: the container is
    named in text and JSON."""
    cid = secrets.token_hex(32)
    with (
        named_cgroup("docker.slice", f"docker-{cid}.scope") as scope,
        Scenario("default") as parent,
    ):
        (scope / "cgroup.procs").write_text(f"{parent.pid}\n")
        text, doc = check(parent.pid, parent.zombies, "default-never-waits")
    assert doc["container"] == {"runtime": "docker", "id": cid, "pod_uid": None}
    assert f"container      docker {cid[:12]}" in text


def test_bad_input_is_one_line_and_exit_2() -> None:
    """Not a number, a PID that does not exist or is gone, a process with no zombie and no
    child: one line on standard error, nothing on standard output, exit 2, with --json too."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    with ZombieParent([ZombieSpec()], sleepers_count=1) as parent:
        sleeper = parent.sleepers[0]
        cases = [
            (["abc"], "not a PID: 'abc'"),
            (["12abc"], "not a PID: '12abc'"),
            (["4194305"], "no such process (pid=4194305)"),
            ([str(sleeper)], f"pid {sleeper} is not a zombie (state S) and has no children"),
        ]
        if not os.path.exists(f"/proc/{gone.pid}"):  # not reused meanwhile
            cases.append(([str(gone.pid)], f"no such process (pid={gone.pid})"))
        for args, message in cases:
            for extra in ([], ["--json"]):
                done = cli("why", *args, *extra)
                assert done.returncode == 2, done
                assert done.stdout == ""
                assert done.stderr.count("\n") == 1
                assert message in done.stderr
                assert "Traceback" not in done.stderr


def test_no_zombies_exits_0() -> None:
    """A parent whose children all live: noted, exit 0."""
    with ZombieParent([], sleepers_count=2, name="calm") as parent:
        status, text, doc = why(str(parent.pid))
    assert status == 0
    assert doc["parents"] == []
    assert doc["quiet"] == [f"pid {parent.pid} (calm) holds no zombies among its 2 children"]
    assert "holds no zombies" in text


def test_asking_by_zombie_pid_explains_its_parent() -> None:
    """A zombie's PID leads to its parent's block."""
    with ZombieParent([ZombieSpec(code=7), ZombieSpec(signal=signal.SIGKILL)]) as parent:
        status, _, doc = why(str(parent.zombies[1]))
    assert status == 1
    found = parent_of(doc, parent.pid)
    assert sorted(z["pid"] for z in found["zombies"]) == sorted(parent.zombies)
    assert {z["exit"]["text"] for z in found["zombies"]} == {"exited 7", "killed by SIGKILL"}


def test_unprivileged_run_says_what_it_could_not_read() -> None:
    """As nobody, the syscall, wchan and zombies' exit statuses of root's parent are hidden:
    said, in text and JSON, not guessed."""
    with Scenario("default") as parent:
        command = [*AS_NOBODY, *UNDERTAKER, "why", str(parent.pid)]
        text, doc = (
            subprocess.run(command + extra, capture_output=True, text=True, timeout=60, check=False)
            for extra in ([], ["--json"])
        )
    assert text.returncode == doc.returncode == 1, text.stderr + doc.stderr
    assert "could not read: syscall" in text.stdout
    assert "could not read: exit statuses of 3 zombies" in text.stdout
    assert "unknown x3" in text.stdout
    assert "verdict        default-never-waits" in text.stdout
    found = parent_of(json.loads(doc.stdout), parent.pid)
    assert found["verdict"] == "default-never-waits"
    assert [z["exit"] for z in found["zombies"]] == [None] * 3
    assert any(what.startswith("exit statuses of 3 zombies") for what in found["unreadable"])


def test_explain_library_is_pure_on_its_evidence() -> None:
    """explain() on a snapshot returns the same verdict the CLI prints."""
    with ZombieParent([ZombieSpec(code=1)], block_sigchld=True) as parent:
        found = explain(scan(), [parent.pid])
    [report] = found.parents
    assert report.diagnosis.verdict == "sigchld-blocked"


def test_watch_shows_a_growing_count() -> None:
    """--watch samples again: a parent that keeps forking shows more zombies the second time."""
    with Scenario("grow") as parent:
        done = cli("why", str(parent.pid), "--watch", "0.5", "--json")
        text = cli("why", str(parent.pid), "--watch", "0.5")
    assert done.returncode == text.returncode == 1, done.stderr
    growth = parent_of(json.loads(done.stdout), parent.pid)["growth"]
    assert growth["seconds"] == 0.5
    assert growth["after"] > growth["before"] >= 3
    [row] = [line for line in text.stdout.splitlines() if line.startswith("  over ")]
    # The value stands in the evidence rows' column.
    assert re.fullmatch(r"  over 0\.5s {6}\d+ -> \d+ zombies \(growing\)", row), row


# Three children exit at once; one byte on stdin makes the parent reap one of them.
_REAPS_ONE_ON_CUE = r"""
import os, sys
kids = [os.fork() or os._exit(0) for _ in range(3)]
print(" ".join(map(str, kids)), flush=True)
sys.stdin.read(1)
os.waitpid(kids[0], 0)
sys.stdin.read(1)
for kid in kids[1:]:  # not left to the session's subreaper
    os.waitpid(kid, 0)
"""


def test_watch_says_a_falling_count_is_shrinking() -> None:
    """A parent that reaps one zombie during the watch: '3 -> 2 zombies (shrinking)'."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _REAPS_ONE_ON_CUE],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert parent.stdin is not None
    assert parent.stdout is not None
    try:
        kids = [int(pid) for pid in parent.stdout.readline().split()]
        assert sleep_until(lambda: all(proc_state(k) == "Z" for k in kids), 10)
        watch = subprocess.Popen(
            [*UNDERTAKER, "why", str(parent.pid), "--watch", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(0.4)  # the first sample is taken by now
        parent.stdin.write("x")
        parent.stdin.flush()
        out, err = watch.communicate(timeout=30)
    finally:
        parent.stdin.close()
        parent.wait(30)
        parent.stdout.close()
    assert watch.returncode == 1, err
    [row] = [line for line in out.splitlines() if line.startswith("  over ")]
    assert row.endswith("3 -> 2 zombies (shrinking)"), row


def test_watch_rejects_a_bad_duration() -> None:
    """--watch takes a positive number of seconds, at most an hour."""
    for bad in ("0", "-1", "x", "7200"):
        done = cli("why", "--watch", bad)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1


def _zombie_children(pid: int) -> list[int]:
    return [p.pid for p in scan(owners=False).children(pid) if p.is_zombie]


def test_c_parent_gets_c_fixes() -> None:
    """A C program (sleep, exec'd by sh after forking) never waits: the fix is C code."""
    sleeper = subprocess.Popen(["sh", "-c", "true & exec sleep 30"])
    try:
        assert sleep_until(lambda: len(_zombie_children(sleeper.pid)) == 1)
        [zombie] = _zombie_children(sleeper.pid)
        text, doc = check(sleeper.pid, [zombie], "default-never-waits")
    finally:
        send_signal(sleeper.pid, signal.SIGKILL)
        sleeper.wait()
    os.waitpid(zombie, 0)  # re-parented to the test session, a subreaper: ours to reap
    assert doc["comm"] == "sleep"
    assert doc["runtime"] is None
    assert doc["forked_without_exec"] == 0
    assert doc["fixes"][0]["how"] == "waitpid(pid, &status, 0);  /* per child */"
    assert "signal(SIGCHLD, SIG_IGN);" in text


_POPEN_PARENT = r"""
import subprocess, sys
child = subprocess.Popen(["true"])
print(child.pid, flush=True)
sys.stdin.read()
child.wait()
"""


def test_python_parent_with_an_unwaited_subprocess() -> None:
    """A Python parent that never waits for its Popen child: the fix names Popen.wait."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _POPEN_PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    assert parent.stdin is not None
    try:
        zombie = int(parent.stdout.readline())
        wait_state(zombie, "Z")
        text, doc = check(parent.pid, [zombie], "default-never-waits")
    finally:
        parent.stdin.close()
        parent.wait(30)
        parent.stdout.close()
    assert "Popen" in doc["fixes"][0]["how"]
    assert "Python: wait for every subprocess you start" in text


def test_parent_waits_for_another_child() -> None:
    """Blocked in wait4 for one live child: the syscall's first argument names it."""
    with Scenario("wait-other") as parent:
        [other] = parent.reaped
        assert sleep_until(lambda: proc_state(parent.pid) == "S")
        text, doc = check(parent.pid, parent.zombies, "waits-for-other-child")
    assert doc["syscall"]["name"] == "wait4"
    assert doc["syscall"]["args"][0] == other
    assert f"waits for one child, pid {other}" in text


def test_parent_is_a_zombie_leader() -> None:
    """The parent's main thread exited; its live thread made the zombies and does not wait."""
    with Scenario("leader", count=2) as parent:
        assert sleep_until(lambda: len(_zombie_children(parent.pid)) == 2)
        zombies = _zombie_children(parent.pid)
        text, doc = check(parent.pid, zombies, "parent-zombie-leader")
    assert doc["state"] == "Z"
    assert doc["live_threads"] == 1
    assert "a live thread must reap" in text


_EVERY_ZOMBIE = r"""
import json, subprocess, sys
from undertaker.testing import ZombieParent, ZombieSpec
def why():
    done = subprocess.run([sys.executable, "-m", "undertaker", "why", "--json"],
                          capture_output=True, text=True)
    return done.returncode, json.loads(done.stdout)
empty = why()
with ZombieParent([ZombieSpec(code=1)] * 2, name="one") as a, \
        ZombieParent([ZombieSpec(code=2)], name="two", block_sigchld=True) as b:
    full = why()
    expected = {a.pid: sorted(a.zombies), b.pid: sorted(b.zombies)}
print(json.dumps({"empty": empty, "full": full, "expected": expected}))
"""


@needs_namespace
def test_no_pid_explains_every_zombie() -> None:
    """Without a PID, every zombie of the (namespace's) machine, grouped by parent."""
    done = run_in_namespace(_EVERY_ZOMBIE)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    status, doc = result["empty"]
    assert (status, doc["parents"]) == (0, [])
    status, doc = result["full"]
    assert status == 1
    found = {p["pid"]: sorted(z["pid"] for z in p["zombies"]) for p in doc["parents"]}
    assert found == {int(pid): zombies for pid, zombies in result["expected"].items()}
    verdicts = {p["comm"]: p["verdict"] for p in doc["parents"]}
    assert verdicts == {"one": "default-never-waits", "two": "sigchld-blocked"}
