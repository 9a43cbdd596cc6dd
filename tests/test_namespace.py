"""Exact counts inside a private PID namespace, and NSpid chains seen from outside."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import needs_namespace, run_in_namespace

pytestmark = needs_namespace

# Inside the namespace we are PID 1: every process there is ours, so counts are exact.
SCENARIO = r"""
import json, signal, subprocess, sys
from undertaker.proc import scan
from undertaker.testing import ZombieLeader, ZombieParent, ZombieSpec
specs = [ZombieSpec(code=7), ZombieSpec(code=7), ZombieSpec(signal=signal.SIGTERM),
         ZombieSpec(code=1, name="a) Z 1 (b")]
with ZombieParent(specs, sleepers_count=5, name="badparent") as parent, ZombieLeader() as leader:
    snap = scan()
    ps = subprocess.run([sys.executable, "-m", "undertaker", "ps", "--json"],
                        capture_output=True, text=True)
    print(json.dumps({
        "parent": parent.pid, "zombies": parent.zombies, "sleepers": parent.sleepers,
        "leader": leader.pid,
        "scan": {"total": len(snap.processes), "zombies": [p.pid for p in snap.zombies],
                 "leaders": [p.pid for p in snap.zombie_leaders],
                 "states": dict(snap.state_counts), "used": snap.pids_used},
        "ps_rc": ps.returncode, "ps": json.loads(ps.stdout), "ps_err": ps.stderr,
    }))
after = subprocess.run([sys.executable, "-m", "undertaker", "ps", "--json"],
                       capture_output=True, text=True)
print(json.dumps({"after_rc": after.returncode, "after": json.loads(after.stdout)}))
"""


@pytest.fixture(scope="module")
def scenario() -> tuple[dict, dict]:  # type: ignore[type-arg]
    done = run_in_namespace(SCENARIO)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    return json.loads(first), json.loads(second)


def test_exact_process_and_zombie_counts(scenario: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    """1 init + 1 parent + 5 sleepers + 4 zombies + 1 leader = 12 processes, 4 zombies."""
    run, _ = scenario
    assert run["scan"]["total"] == 12
    assert sorted(run["scan"]["zombies"]) == sorted(run["zombies"])
    assert run["scan"]["leaders"] == [run["leader"]]
    assert run["scan"]["states"]["Z"] == 5  # the kernel's letter counts the leader too
    # Every process has one thread except the leader (2: the dead leader and a live one).
    assert run["scan"]["used"] == 13


def test_ps_json_in_namespace(scenario: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    """ps --json groups the four zombies under their parent and exits 1."""
    run, _ = scenario
    doc = run["ps"]
    assert run["ps_rc"] == 1, run["ps_err"]
    assert sorted(z["pid"] for z in doc["zombies"]) == sorted(run["zombies"])
    assert [p["pid"] for p in doc["parents"]] == [run["parent"]]
    parent = doc["parents"][0]
    assert parent["comm"] == "badparent"
    assert parent["zombies"] == 4
    assert parent["exit_statuses"] == {"exited 7": 2, "killed by SIGTERM": 1, "exited 1": 1}
    assert {z["comm"] for z in doc["zombies"]} >= {"a) Z 1 (b"}
    assert all(z["nspid"] == [z["pid"]] for z in doc["zombies"])  # own /proc: one level
    assert [p["pid"] for p in doc["zombie_leaders"]] == [run["leader"]]
    # The ps process itself is the 13th process while it runs.
    assert sum(doc["states"].values()) == 13
    assert doc["pids"]["used"] >= 14


def test_ps_exits_0_when_clean(scenario: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    """After the parent reaps, the namespace has no zombies and ps exits 0."""
    _, after = scenario
    assert after["after_rc"] == 0
    assert after["after"]["zombies"] == []
    assert after["after"]["parents"] == []
    assert "Z" not in after["after"]["states"]


HOLD = r"""
import json, sys
from undertaker.testing import ZombieParent, ZombieSpec
with ZombieParent([ZombieSpec(code=3), ZombieSpec(code=4)]) as parent:
    print(json.dumps({"zombies": parent.zombies}), flush=True)
    sys.stdin.read()
"""


def test_nspid_chain_seen_from_the_host() -> None:
    """From the host, a zombie inside a namespace shows (host pid, inner pid)."""
    from undertaker.census import take_census  # noqa: PLC0415
    from undertaker.proc import scan  # noqa: PLC0415

    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", HOLD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        inner = json.loads(proc.stdout.readline())["zombies"]
        census = take_census(scan(owners=False), ages=False)
        found = {z.nspid[-1]: z for z in census.zombies if len(z.nspid) == 2}
        assert set(inner) <= set(found)
        for pid in inner:
            assert found[pid].nspid == (found[pid].process.pid, pid)
            assert found[pid].process.pid != pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()


REUSE = r"""
import json, os, subprocess, sys, time
from undertaker.census import take_census
from undertaker.proc import scan
from undertaker.testing import ZombieParent, ZombieSpec

def take_pid(pid):
    # PID + start time identifies a process to the clock tick (10 ms): a reuse
    # inside the same tick, possible only with this ns_last_pid trick, would
    # pass for the original. Let the tick pass first.
    time.sleep(0.03)
    # The next fork in this namespace gets `pid`: ns_last_pid is per namespace.
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    return subprocess.Popen(["sleep", "30"])

parent = ZombieParent([ZombieSpec(code=3)], name="oldparent").start()
zombie = parent.zombies[0]
snap = scan()
before = take_census(snap)
# SIGKILL the parent: its zombie is re-parented to us (PID 1) and stays a zombie.
parent._workload.proc.kill()
parent._workload.proc.wait()
squatters = [take_pid(parent.pid)]
middle = take_census(snap)  # the zombie is still the same; its old parent's PID is not
os.waitpid(zombie, 0)  # now reap it, and let another process take its PID
squatters.append(take_pid(zombie))
after = take_census(snap)
print(json.dumps({
    "squatters": [p.pid for p in squatters], "parent": parent.pid, "zombie": zombie,
    "before": [[g.pid, g.cmdline is not None] for g in before.parents],
    "middle": [[g.pid, g.cmdline] for g in middle.parents],
    "middle_zombies": [z.process.pid for z in middle.zombies],
    "after": [z.process.pid for z in after.zombies],
}))
for p in squatters:
    p.kill()
    p.wait()
parent.close()
"""


def test_census_ignores_pids_reused_since_the_scan() -> None:
    """Reads after the scan check identity: a reused parent PID or zombie PID is not trusted."""
    done = run_in_namespace(REUSE)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["squatters"] == [doc["parent"], doc["zombie"]]  # the PIDs really were reused
    assert doc["before"] == [[doc["parent"], True]]
    # The zombie is still itself, but the command line at its old parent's PID is a stranger's.
    assert doc["middle_zombies"] == [doc["zombie"]]
    assert doc["middle"] == [[doc["parent"], None]]
    # Once reaped and its PID reused, the zombie is dropped.
    assert doc["after"] == []
