"""undertaker lab: every experiment runs for real, isolated, and reaches its verdict.

Each experiment is run once in its sandbox (a private PID namespace as root),
and the test checks the verdict and the observations it was computed from,
and that nothing was left behind.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from typing import Any

import pytest

from undertaker.lab import EXPERIMENTS, SEEDS, run_isolated
from undertaker.lab._programs import cores_stay_local

# experiment id -> the verdict the kernel of our machines gives
EXPECTED = {
    "mp-unjoined": "confirmed",
    "kill9-zombie": "confirmed",
    "kill-parent": "confirmed",
    "parent-exited-zombie": "refuted",
    "orphan-adopter": "depends",
    "double-fork": "confirmed",
    "no-reboot": "refuted",
    "handler-once": "refuted",
    "handler-loop": "confirmed",
    "handler-article": "depends",
    "sigign-no-zombies": "confirmed",
    "sigign-handover": "refuted",
    "sigign-late": "depends",
    "waitpid-pid": "confirmed",
    "waitpid-echild": "confirmed",
    "waitpid-eintr": "refuted",
    "wnohang-poll": "confirmed",
    "status-macros": "confirmed",
    "stop-continue": "confirmed",
    "waitpid-options": "refuted",
    "three-wait-loop": "confirmed",
    "three-wait-drain": "confirmed",
    "three-wait-once": "confirmed",
    "three-wait-twice": "confirmed",
    "three-sig-ign": "confirmed",
    "three-no-wait": "confirmed",
    "tty-ctrl-c": "confirmed",
    "tty-ctrl-z": "confirmed",
    # a core file only if the limit the lab is started with allows one (`ulimit -c`)
    "tty-ctrl-backslash": "confirmed"
    if resource.getrlimit(resource.RLIMIT_CORE)[0] != 0 and cores_stay_local()
    else "depends",
    "tty-ctrl-d": "confirmed",
    "echo-server-reap": "depends",
    "echo-server-no-reap": "confirmed",
    "zombie-memory": "refuted",
    "zombie-cost": "confirmed",
    "pid-exhaustion": "confirmed",
    "ps-states": "depends",
    "pdeathsig": "confirmed",
    "pdeathsig-thread": "depends",
}


def _key_observations(result: dict[str, Any]) -> None:
    """The observations each verdict rests on."""
    data = result["data"]
    checks = {
        "mp-unjoined": lambda: data["son_state"] == "Z" and data["joined_exitcode"] == 0,
        "kill9-zombie": lambda: (
            data["state_after"] == "Z" and data["exit_before"] == data["exit_after"] == "exited 7"
        ),
        "kill-parent": lambda: (
            data["adopted"] and sorted(data["statuses"].values()) == ["exited 3", "exited 7"]
        ),
        "parent-exited-zombie": lambda: data["orphan_reaped"] and data["live_parent_child"] == "Z",
        "orphan-adopter": lambda: (
            data["orphan_under_subreaper_ppid"] == data["subreaper"]
            and data["plain_orphan_ppid"] == 1
        ),
        "double-fork": lambda: data["grandchild_ppid"] == 1 and data["parent_zombies"] == 0,
        "no-reboot": lambda: data["zombies_gone"] and data["parent_alive"],
        "handler-once": lambda: (
            data["blocked"]["calls"] == 1 and data["blocked"]["zombies"] == data["burst"] - 1
        ),
        "handler-loop": lambda: (
            data["blocked"]["calls"] == 1
            and data["blocked"]["zombies"] == data["sleeping"]["zombies"] == 0
        ),
        "handler-article": lambda: data["reaped"] == 1 and data["zero"] > 0,
        "sigign-no-zombies": lambda: (
            "Z" not in data["states"] and data["wait"] == "ECHILD" and data["running_at_wait"] == 1
        ),
        "sigign-handover": lambda: (
            data["handed_to_adopter"] == [] and data["ppids"] == [data["parent"]]
        ),
        "sigign-late": lambda: data["state_after_ign"] == "Z" and "exited 4" in data["wait"],
        "waitpid-pid": lambda: all(data["matches"]),
        "waitpid-echild": lambda: list(data["calls"].values()).count("ECHILD") == 4,
        "waitpid-eintr": lambda: (
            data["caught"]["errno"] == "EINTR"
            and data["ignored"]["returned"] > 0
            and data["caught_restart"]["returned"] > 0
        ),
        "wnohang-poll": lambda: data["first"] == [0, 0] and data["reaped"],
        "status-macros": lambda: (
            [c["described"] for c in data["cases"]]
            == [
                "exited 5",
                "exited 7",
                "killed by SIGTERM",
                "killed by SIGSEGV",
                "killed by SIGSEGV (core dumped)",
            ]
            and data["core_files"] == 1
        ),
        "stop-continue": lambda: (
            data["calls"]["SIGTSTP: waitpid(WUNTRACED)"] == "stopped by SIGTSTP"
        ),
        "waitpid-options": lambda: data["options"]["waitpid(WCONTINUED)"] == "accepted",
        "three-wait-loop": lambda: data["printed"] == [*data["exit_order"], -1],
        "three-wait-drain": lambda: data["parent_exit_after_last_child"],
        "three-wait-once": lambda: len(data["adopted_by_adopter"]) == 2,
        "three-wait-twice": lambda: data["printed"] == [data["exit_order"][1], -1],
        "three-sig-ign": lambda: data["states"] == [None, None, None],
        "three-no-wait": lambda: (
            data["states"] == ["Z", "Z", "Z"] and len(data["adopted_by_adopter"]) == 3
        ),
        "tty-ctrl-c": lambda: (
            data["default"]["foreground"] == ["killed by SIGINT"] * 2
            and data["default"]["background"] == "running"
            and data["raw"]["read"]["read"] == "\x03"
        ),
        "tty-ctrl-z": lambda: data["states"] == ["T", "T"],
        "tty-ctrl-backslash": lambda: (
            (
                data["raised"]["foreground"] == ["killed by SIGQUIT (core dumped)"] * 2
                and data["raised"]["core_files"] == 2
            )
            if data["cores_stay_local"]
            else data["raised"]["foreground"][0].startswith("killed by SIGQUIT")
        ),
        "tty-ctrl-d": lambda: data["read"]["bytes"] == 0,
        "echo-server-reap": lambda: (
            (data["idle"], data["during_next"], data["after_next"]) == (data["clients"], 0, 1)
        ),
        "echo-server-no-reap": lambda: data["after_next"] == data["clients"] + 1,
        "zombie-memory": lambda: (
            data["zombie_rss_kb"] is None
            and data["zombie_statm"] == [0] * 7
            and data["alive_rss_kb"] > 128 * 1024
        ),
        "zombie-cost": lambda: (
            data["zombies_holding_pids"] == data["zombies"]
            and data["zombie_user_pages"] == 0
            and data["per_zombie"]["slab_bytes"] != 0
        ),
        "pid-exhaustion": lambda: (
            data["zombies"] == 11 and data["pids_current"] == 12 and data["fork_after_reaping"]
        ),
        "ps-states": lambda: (
            data["states"] == {"R": "R", "S": "S", "T": "T", "t": "t", "Z": "Z", "D": "D"}
        ),
        "pdeathsig": lambda: data["child_status"] == "killed by SIGHUP",
        "pdeathsig-thread": lambda: (
            data["child_status"] == "killed by SIGHUP" and data["parent_alive"]
        ),
    }
    assert checks[result["id"]](), result


@pytest.mark.parametrize("exp_id", [e.id for e in EXPERIMENTS])
def test_experiment(exp_id: str) -> None:
    """The experiment reaches the expected verdict, from its observations, leaving nothing."""
    result = run_isolated(exp_id)
    assert EXPECTED[exp_id] == result["status"], result
    assert result["left_behind"] == []
    assert result["observed"]
    _key_observations(result)


def test_every_experiment_has_an_expectation() -> None:
    """No experiment escapes the suite."""
    assert sorted(EXPECTED) == sorted(e.id for e in EXPERIMENTS)


def test_registry_is_well_formed() -> None:
    """Ids are unique, every experiment names a known article and a one-line claim."""
    ids = [e.id for e in EXPERIMENTS]
    assert len(ids) == len(set(ids))
    for exp in EXPERIMENTS:
        assert exp.seed in SEEDS
        assert exp.claim
        assert "\n" not in exp.claim


_NO_CGROUP = r"""
import json
import undertaker
from undertaker.lab import _cost
from undertaker.lab._core import Lab
undertaker.become_subreaper()
_cost._pids_cgroup_root = lambda: None  # a machine without a pids cgroup to make
lab = Lab(namespace=False)
verdict = _cost.pid_exhaustion.run(lab)
print(json.dumps({"verdict": verdict.verdict, "data": lab.data}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the root fallback needs root")
def test_pid_exhaustion_without_a_pids_cgroup_uses_a_fresh_uid() -> None:
    """As root with no pids cgroup: RLIMIT_NPROC under an unused uid, same verdict."""
    done = subprocess.run(
        [sys.executable, "-c", _NO_CGROUP], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "confirmed"
    assert result["data"]["limit"].startswith("RLIMIT_NPROC 13 as unused uid")
    assert result["data"]["zombies"] == 12  # 13 tasks allowed, the filler one of them
    assert result["data"]["fork_after_reaping"]


_IN_NEW_SESSION = r"""
import json, os
from undertaker.lab import run_isolated
os.setsid()  # as under a service manager or a CI runner: the lab leads its own session
print(json.dumps(run_isolated("stop-continue")))
"""


def test_stop_continue_holds_when_the_lab_leads_its_own_session() -> None:
    """SIGTSTP still stops the child when the lab's own process group is orphaned."""
    result = _script(_IN_NEW_SESSION)
    assert result["status"] == "confirmed", result
    assert result["data"]["calls"]["SIGTSTP: waitpid(WUNTRACED)"] == "stopped by SIGTSTP"


def _script(code: str, *args: str) -> Any:
    """Run *code* in a fresh interpreter; it must exit 0 and print one JSON document."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


_BUSY_SLABS = r"""
import json
import undertaker
from undertaker.lab import _cost
from undertaker.lab._core import Lab
undertaker.become_subreaper()
read, calls = _cost._slab_objects, []
def busy():  # 300 other tasks start while the zombies are counted, and end after
    found = read()
    calls.append(1)
    if found is not None and len(calls) == 2:
        objects, size = found["task_struct"]
        found["task_struct"] = (objects + 300, size)
    return found
_cost._slab_objects = busy
lab = Lab(namespace=False)
verdict = _cost.zombie_cost.run(lab)
print(json.dumps({"verdict": verdict.verdict, "why": verdict.why, "data": lab.data}))
"""


def test_zombie_cost_verdict_does_not_rest_on_machine_wide_slab_counts() -> None:
    """Other tasks hiding task_struct in /proc/slabinfo leave the verdict as it is."""
    result = _script(_BUSY_SLABS)
    assert result["verdict"] == "confirmed", result
    assert result["data"]["zombies_holding_pids"] == 200


_LATE_CHILD = r"""
import json
import undertaker
from undertaker.lab import _three
from undertaker.lab._core import Lab
undertaker.become_subreaper()
_three.DELAYS = (0.03, 0.10, 0.30)  # the last child late, as on a busy machine
results = {}
for exp in (_three.three_no_wait, _three.three_sig_ign):
    lab = Lab(namespace=False)
    results[exp.id] = [exp.run(lab).verdict, lab.data["states"]]
print(json.dumps(results))
"""


def test_three_children_verdicts_survive_a_late_child() -> None:
    """A child that ends after the parent's scaled sleep(20) changes no verdict."""
    assert _script(_LATE_CHILD) == {
        "three-no-wait": ["confirmed", ["Z", "Z", "Z"]],
        "three-sig-ign": ["confirmed", [None, None, None]],
    }


_LATE_SIGNAL = r"""
import json, os, time
import undertaker
from undertaker.lab import _waiting
from undertaker.lab._core import Lab
undertaker.become_subreaper()
send = os.kill
def late_kill(pid, sig):  # the sender scheduled late, as on a busy machine
    time.sleep(0.4)
    send(pid, sig)
os.kill = late_kill
lab = Lab(namespace=False)
verdict = _waiting.waitpid_eintr.run(lab)
print(json.dumps({"verdict": verdict.verdict, "caught": lab.data["caught"]}))
"""


def test_waitpid_eintr_does_not_race_the_signal_against_the_child() -> None:
    """A signal sent late still finds waitpid blocked: the verdict does not flip."""
    result = _script(_LATE_SIGNAL)
    assert result["verdict"] == "refuted", result
    assert result["caught"]["errno"] == "EINTR"


_CORE_LIMIT = r"""
import json, resource, sys
from undertaker.lab import run_isolated
hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
resource.setrlimit(resource.RLIMIT_CORE, (int(sys.argv[1]) if sys.argv[1] else hard, hard))
print(json.dumps(run_isolated("tty-ctrl-backslash")))
"""


@pytest.mark.skipif(not cores_stay_local(), reason="core_pattern sends cores elsewhere")
def test_ctrl_backslash_core_is_judged_with_the_limit_the_lab_got() -> None:
    """`ulimit -c 0` (a common default): no core, so 'dumps core' depends; unlimited: confirmed."""
    for soft, verdict, cores in (("0", "depends", 0), ("", "confirmed", 2)):
        result = _script(_CORE_LIMIT, soft)
        assert result["status"] == verdict, result
        assert result["data"]["inherited"]["core_files"] == cores
        assert result["data"]["raised"]["core_files"] == 2


_SIG_IGN_TEN_TIMES = r"""
import json
import undertaker
from undertaker.lab import _sigchld
from undertaker.lab._core import Lab
undertaker.become_subreaper()
running = []
for _ in range(10):
    lab = Lab(namespace=False)
    _sigchld.sigign_no_zombies.run(lab)
    running.append(lab.data["running_at_wait"])
print(json.dumps(running))
"""


def test_sig_ign_wait_starts_before_the_last_child_ends() -> None:
    """The last child is let go only once the parent sleeps in wait(): 'it blocked' every time."""
    assert _script(_SIG_IGN_TEN_TIMES) == [1] * 10
