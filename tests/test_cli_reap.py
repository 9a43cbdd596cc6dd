"""``undertaker reap`` end to end: dry runs, each method, each refusal and its exit status.

Only processes these tests start are acted on; ``--all`` runs only inside a
private PID namespace (other processes on the machine are none of our business).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from helpers import (
    AS_NOBODY,
    UNDERTAKER,
    cli,
    cli_to_full_disk,
    needs_namespace,
    run_in_namespace,
)
from test_reap_ptrace import _tracer_of, parent
from undertaker.testing import ZombieLeader, ZombieParent, ZombieSpec, proc_state, sleep_until


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    """Without --yes, ptrace and kill-parent only say what they would do (and log it)."""
    log = tmp_path / "reap.log"
    with ZombieParent([ZombieSpec(code=3), ZombieSpec(code=4)], sleepers_count=1) as zp:
        for method in ("ptrace", "kill-parent", "auto"):
            done = cli("reap", "--parent", str(zp.pid), "--method", method, "--log", str(log))
            assert done.returncode == 0, done.stderr
            assert "dry run; --yes to act" in done.stdout
            assert "exited 3" in done.stdout
            assert [proc_state(z) for z in zp.zombies] == ["Z", "Z"]
            assert proc_state(zp.pid) == "S"
            assert _tracer_of(zp.pid) == 0
        assert "1 live child(ren) would be orphaned" in done.stdout or method == "auto"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["action"] for e in entries] == ["ptrace", "kill-parent", "ptrace"]
    assert all(e["dry_run"] for e in entries)
    assert entries[0]["zombies"][0]["status_text"] == "exited 3"


def test_ptrace_yes_reaps_prints_statuses_and_logs(tmp_path: Path) -> None:
    """--yes reaps through the live parent, prints the lost statuses and the caveat, logs JSON."""
    log = tmp_path / "reap.log"
    with parent("sleep", 2) as p:
        zpids = [str(z) for z in p.zombies]
        done = cli("reap", *zpids, "--method", "ptrace", "--yes", "--log", str(log))
        assert done.returncode == 0, done.stderr
        assert "reaped 2 of 2" in done.stdout
        assert "exited 3" in done.stdout
        assert "exited 4" in done.stdout
        # the statuses are printed before the reap that loses them
        assert done.stdout.index("exited 4") < done.stdout.index("ptrace: reaped")
        assert "ECHILD" in done.stdout
        assert [proc_state(z) for z in p.zombies] == [None, None]
        report = p.result()
    assert report["other"] == 5 << 8
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["action"] == "ptrace"
    assert entry["dry_run"] is False
    assert entry["reaped"] == p.zombies
    assert entry["parent"]["pid"] == p.pid
    assert entry["parent"]["start_ticks"] > 0
    assert entry["who"]["uid"] == os.getuid()


def test_nudge_makes_a_parent_with_a_handler_reap() -> None:
    """A handler that lost coalesced SIGCHLDs reaps one more per nudge; auto stops at --max."""
    with parent("handler", 3) as p:
        before = [z for z in p.zombies if proc_state(z) == "Z"]
        assert len(before) == 2  # one reaped by the single coalesced SIGCHLD
        done = cli("reap", "--parent", str(p.pid), "--max", "nudge")
        assert "nudge: sent SIGCHLD; the parent reaped 1 of 2" in done.stdout
        assert done.returncode == 9  # one zombie remains and nothing else was allowed
        assert sum(proc_state(z) == "Z" for z in before) == 1
        assert p.proc.stdin is not None
        p.proc.stdin.write("x\n")  # let it end: it waits for what is left
        p.proc.stdin.flush()
        assert p.result()["result"] == "x"


def test_a_protected_parent_is_not_even_nudged() -> None:
    """--protect means never act on it: no SIGCHLD either, so its handler reaps nothing."""
    with parent("handler", 3) as p:
        before = [z for z in p.zombies if proc_state(z) == "Z"]
        done = cli("reap", "--parent", str(p.pid), "--max", "nudge", "--protect", str(p.pid))
        assert done.returncode == 8, done.stderr
        assert "nudge: refused: the parent is protected" in done.stdout
        assert [proc_state(z) for z in before] == ["Z"] * len(before)
        assert p.proc.stdin is not None
        p.proc.stdin.write("x\n")
        p.proc.stdin.flush()
        assert p.result()["result"] == "x"


def test_nudge_skips_a_parent_without_handler() -> None:
    """No SIGCHLD handler: no signal is sent, and the zombies remain (exit 9)."""
    with ZombieParent([ZombieSpec(code=1)]) as zp:
        done = cli("reap", str(zp.zombies[0]), "--method", "nudge")
        assert done.returncode == 9
        assert "no SIGCHLD handler" in done.stdout
        assert proc_state(zp.zombies[0]) == "Z"


def test_refusals_have_distinct_exit_statuses() -> None:
    """Not a zombie 5, no such parent 6, zombie leader 7, protected parent 8; one line each."""
    with open("/proc/sys/kernel/pid_max") as pid_max:
        unused = int(pid_max.read())  # PIDs are below pid_max: never in use
    with ZombieParent([ZombieSpec(code=1)], sleepers_count=1) as zp, ZombieLeader() as zl:
        cases = {
            5: ["reap", str(zp.sleepers[0])],
            6: ["reap", "--parent", str(unused)],
            7: ["reap", str(zl.pid)],
            8: ["reap", str(zp.zombies[0]), "--method", "ptrace", "--protect", str(zp.pid)],
        }
        for status, args in cases.items():
            done = cli(*args)
            assert done.returncode == status, (args, done.stderr)
            assert len(done.stderr.splitlines()) == 1, done.stderr
            assert "Traceback" not in done.stderr
        assert proc_state(zp.zombies[0]) == "Z"


def test_a_thread_id_is_not_a_zombie() -> None:
    """A TID (a thread of ours) is refused as not a zombie, in one line (was a traceback)."""
    idle = threading.Event()
    thread = threading.Thread(target=idle.wait)
    thread.start()
    try:
        tid = thread.native_id
        assert tid is not None
        done = cli("reap", str(tid), "--method", "ptrace", "--yes")
    finally:
        idle.set()
        thread.join()
    assert done.returncode == 5, done.stderr
    assert done.stderr == (
        f"undertaker reap: a thread of process {os.getpid()}, not a process (pid={tid})\n"
    )


def test_bad_usage_is_exit_2() -> None:
    """No target, two kinds, bad numbers, a method beyond --max, an unopenable log: exit 2."""
    with open("/proc/sys/kernel/pid_max") as pid_max:
        unused = pid_max.read().strip()  # not a zombie: would be exit 5 if looked at
    for args in (
        ["reap"],
        ["reap", "1", "--all"],
        ["reap", "abc"],
        ["reap", "-5"],
        ["reap", unused, "--method", "foo"],
        ["reap", unused, "--grace", "nan"],
        ["reap", unused, "--grace", "-1"],
        ["reap", unused, "--method", "ptrace", "--max", "nudge"],
        ["reap", unused, "--method", "kill-parent", "--max", "ptrace"],
        ["reap", unused, "--log", "/nonexistent/dir/x"],  # checked before anything else
    ):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1, done.stderr


def test_an_unwritable_log_stops_with_one_line() -> None:
    """--log /dev/full: the reap done is printed, then one error line, exit 2, no traceback."""
    with parent("sleep", 2) as p:
        done = cli(
            "reap", "--parent", str(p.pid), "--method", "ptrace", "--yes", "--log", "/dev/full"
        )
        assert done.returncode == 2, done.stderr
        assert "reaped 2 of 2" in done.stdout
        assert done.stderr == (
            "undertaker reap: error: cannot log the ptrace above to /dev/full: "
            "No space left on device; stopped there\n"
        )
        assert [proc_state(z) for z in p.zombies] == [None, None]
        assert p.result()["other"] == 5 << 8


def test_output_to_a_full_disk_stops_before_acting() -> None:
    """> /dev/full: the first line cannot be written, so nothing is done; one line, exit 2."""
    with ZombieParent([ZombieSpec(code=1)]) as zp:
        done = cli_to_full_disk("reap", str(zp.zombies[0]), "--method", "ptrace", "--yes")
        assert done.returncode == 2
        assert done.stderr == (
            "undertaker: error: cannot write to standard output: No space left on device\n"
        )
        assert proc_state(zp.zombies[0]) == "Z"
        assert _tracer_of(zp.pid) == 0


def test_protect_names_what_matched_and_yes_on_a_live_process_is_refused() -> None:
    """--protect by PID or by command says which; a live PID with --yes is exit 5, untouched."""
    with ZombieParent([ZombieSpec(code=1)], sleepers_count=1) as zp:
        zombie = str(zp.zombies[0])
        for item in (str(zp.pid), proc_comm(zp.pid)):
            done = cli("reap", zombie, "--method", "kill-parent", "--yes", "--protect", item)
            assert done.returncode == 8, done.stderr
            assert f"protected (--protect {item})" in done.stderr
        done = cli("reap", str(zp.sleepers[0]), "--method", "kill-parent", "--yes")
        assert done.returncode == 5
        assert "not a zombie" in done.stderr
        assert proc_state(zp.sleepers[0]) == "S"
        assert proc_state(zp.pid) == "S"
        assert proc_state(zp.zombies[0]) == "Z"


def test_kill_parent_never_ends_our_own_ancestor() -> None:
    """The test process is the CLI's parent: kill-parent refuses it (exit 8) even with --yes."""
    pid = os.fork()
    if pid == 0:
        os._exit(6)
    try:
        assert sleep_until(lambda: proc_state(pid) == "Z")
        done = cli("reap", str(pid), "--method", "kill-parent", "--yes")
        assert done.returncode == 8
        assert "ancestors" in done.stderr
    finally:
        assert os.waitpid(pid, 0)[1] == 6 << 8


def test_kill_parent_says_who_adopted(tmp_path: Path) -> None:
    """SIGTERM ends the parent; its zombies go to the nearest subreaper (this test run); logged."""
    log = tmp_path / "reap.log"
    with ZombieParent([ZombieSpec(code=2), ZombieSpec(code=3)]) as zp:
        done = cli(
            *("reap", "--parent", str(zp.pid), "--method", "kill-parent", "--yes"),
            *("--grace", "2", "--log", str(log)),
        )
        assert "sent SIGTERM to" in done.stdout
        assert done.stdout.count(f"adopted by {os.getpid()}") == 2
        assert done.returncode == 9  # we adopted them and, inside the CLI's run, did not reap
        assert proc_state(zp.zombies[0]) == "Z"
        for z in zp.zombies:
            os.waitpid(z, 0)
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["action"] == "kill-parent"
    assert entry["dry_run"] is False
    assert entry["signals"] == ["SIGTERM"]
    assert entry["adopters"] == {str(z): os.getpid() for z in zp.zombies}
    assert entry["reaped"] == []
    assert entry["live_children"] == 0
    assert [z["status_text"] for z in entry["zombies"]] == ["exited 2", "exited 3"]


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, *UNDERTAKER, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_unprivileged_ptrace_is_refused_with_the_reason() -> None:
    """As uid 65534, ptrace of a root parent: exit 4, naming ptrace_scope and CAP_SYS_PTRACE."""
    with ZombieParent([ZombieSpec(code=1)]) as zp:
        for extra in ([], ["--yes"]):
            done = _as_nobody("reap", str(zp.zombies[0]), "--method", "ptrace", *extra)
            assert done.returncode == 4, done.stderr
            assert "CAP_SYS_PTRACE" in done.stderr
            assert "ptrace_scope" in done.stderr or "Yama is not enabled" in done.stderr
            assert "Traceback" not in done.stderr
        # kill-parent: refused already in the dry run, rather than "would send SIGTERM"
        done = _as_nobody("reap", str(zp.zombies[0]), "--method", "kill-parent")
        assert done.returncode == 4, done.stderr
        assert "may not send SIGTERM: needs CAP_KILL" in done.stderr
        assert proc_state(zp.zombies[0]) == "Z"
        assert proc_state(zp.pid) == "S"


def proc_comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as comm:
        return comm.read().strip()


# Shared by the namespace scripts: a parent P of two zombies (exit 3 and 4)
# that lives until PID 1 closes its end of the pipe w.
_PARENT_WITH_TWO_ZOMBIES = r"""
r, w = os.pipe()
p = os.fork()
if p == 0:
    os.close(w)
    for code in (3, 4):
        if os.fork() == 0:
            os._exit(code)
    os.read(r, 1)
    os._exit(0)
os.close(r)
def zombies_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as kids:
        return [k for k in kids.read().split() if proc_state(int(k)) == "Z"]
sleep_until(lambda: len(zombies_of(p)) == 2)
"""


# PID 1 of a private namespace, with zombies of its own and a parent with zombies.
_NS = r"""
import json, os, subprocess, sys, time
from undertaker.testing import proc_state, sleep_until
mine = os.fork()
if mine == 0:
    os._exit(1)
sleep_until(lambda: proc_state(mine) == "Z")
run = lambda *a: subprocess.run([sys.executable, "-m", "undertaker", "reap", *a],
                                capture_output=True, text=True)
out = {}
out["init_kill"] = run(str(mine), "--method", "kill-parent", "--yes").returncode
out["init_ptrace"] = run(str(mine), "--method", "ptrace", "--yes").returncode
PARENT_WITH_TWO_ZOMBIES
done = run("--all", "--method", "ptrace", "--yes")
out["all_rc"] = done.returncode
out["all_out"] = done.stdout
os.close(w)
os.waitpid(p, 0)
print(json.dumps(out))
""".replace("PARENT_WITH_TWO_ZOMBIES\n", _PARENT_WITH_TWO_ZOMBIES)


@needs_namespace
def test_pid_1_is_refused_and_all_reaps_the_rest() -> None:
    """In a private namespace: PID 1 is never killed or traced (8); --all --yes reaps the others."""
    done = run_in_namespace(_NS)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["init_kill"] == 8
    assert out["init_ptrace"] == 8
    assert out["all_rc"] == 8  # PID 1's own zombie is still refused
    assert "reaped 2 of 2" in out["all_out"]


# Runs under `undertaker run` as PID 1 of a private namespace: it adopts and
# reaps orphans, so the zombies of a killed parent must be reaped by it.
_ADOPT = r"""
import os, subprocess, sys, time
from undertaker.testing import proc_state, sleep_until
PARENT_WITH_TWO_ZOMBIES
done = subprocess.run([sys.executable, "-m", "undertaker", "reap", "--parent", str(p),
                       "--method", "kill-parent", "--yes", "--grace", "2"],
                      capture_output=True, text=True)
print(done.returncode)
print(done.stdout)
os.waitpid(p, 0)
""".replace("PARENT_WITH_TWO_ZOMBIES\n", _PARENT_WITH_TWO_ZOMBIES)


@needs_namespace
def test_kill_parent_zombies_are_adopted_and_reaped_by_init() -> None:
    """Under a reaping init (undertaker run as PID 1) the killed parent's zombies are reaped."""
    done = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-m",
            "undertaker",
            "run",
            "--",
            sys.executable,
            "-c",
            _ADOPT,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status, _, out = done.stdout.partition("\n")
    assert status == "0", out
    assert "sent SIGTERM to" in out
    assert "2 of 2 zombie(s) reaped after adoption" in out
    assert out.count(", reaped") == 2


def test_the_reap_commands_why_suggests_run_as_dry_runs() -> None:
    """Each ``undertaker reap`` fix that ``why`` ranks is accepted and, alone, changes nothing."""
    with ZombieParent([ZombieSpec(code=3)]) as zp:
        done = cli("why", str(zp.pid), "--json")
        fixes = json.loads(done.stdout)["parents"][0]["fixes"]
        commands = [f["how"].split()[1:] for f in fixes if f["how"].startswith("undertaker reap")]
        assert {c[2] for c in commands} >= {"ptrace", "kill-parent"}
        for args in commands:
            ran = cli(*args)
            assert ran.returncode == 0, (args, ran.stderr)
            assert "dry run; --yes to act" in ran.stdout
        assert proc_state(zp.zombies[0]) == "Z"
        assert proc_state(zp.pid) == "S"
