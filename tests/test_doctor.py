"""``undertaker doctor``: findings about the machine, checked in real PID namespaces."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import UNDERTAKER, cli, needs_namespace, run_in_namespace
from undertaker.diagnose._doctor import ACTION, NOTE, OK, judge_limit, judge_ptrace, judge_self

# PID 1 of a fresh namespace makes two zombies (or none), then runs doctor.
_AS_INIT = r"""
import json, os, subprocess, sys, time
for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        os._exit(3)
time.sleep(0.2)
done = subprocess.run([sys.executable, "-m", "undertaker", "doctor", "--json"],
                      capture_output=True, text=True)
text = subprocess.run([sys.executable, "-m", "undertaker", "doctor"],
                      capture_output=True, text=True)
print(json.dumps({"rc": done.returncode, "doc": json.loads(done.stdout), "text": text.stdout,
                  "text_rc": text.returncode, "err": done.stderr + text.stderr}))
"""


def _doctor_as_init(zombies: int) -> dict:  # type: ignore[type-arg]
    done = run_in_namespace(_AS_INIT, str(zombies))
    assert done.returncode == 0, done.stderr
    result: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    assert result["err"] == ""
    return result


@needs_namespace
def test_init_holding_zombies_needs_action() -> None:
    """PID 1 of the namespace holds zombies: the init finding needs action, exit 1."""
    result = _doctor_as_init(2)
    assert result["rc"] == result["text_rc"] == 1
    [init] = [f for f in result["doc"]["findings"] if f["check"] == "init"]
    assert init["level"] == ACTION
    assert "holding 2 zombie(s)" in init["fact"]
    assert "docker run --init" in init["advice"]
    assert "[ACTION] PID 1 is python" in result["text"]


@needs_namespace
def test_init_that_reaps_is_fine() -> None:
    """PID 1 with no zombies: the init finding is ok; nothing else needs action here."""
    result = _doctor_as_init(0)
    levels = {f["check"]: f["level"] for f in result["doc"]["findings"]}
    assert levels["init"] == OK
    assert result["rc"] == 0, result["doc"]


def test_doctor_runs_on_the_host() -> None:
    """On the host, doctor prints every check and exits 0 or 1, never 2."""
    done = cli("doctor", "--json")
    assert done.returncode in (0, 1), done.stderr
    checks = [f["check"] for f in json.loads(done.stdout)["findings"]]
    for name in ("self", "init", "pid_max", "threads-max", "ptrace", "pidfd"):
        assert name in checks


def test_judges() -> None:
    """The pure judgements: pressure at 80%, ptrace scope 3, subreaper."""
    assert judge_limit("pid_max", 900, 1000).level == ACTION
    assert judge_limit("pid_max", 100, 1000).level == OK
    assert judge_limit("pid_max", None, 1000).level == NOTE
    assert judge_ptrace(3, capable=True).level == NOTE
    assert judge_ptrace(None, capable=True).level == OK
    assert judge_ptrace(2, capable=False).advice.startswith("run `undertaker reap")
    assert judge_self(1, subreaper=False).level == OK
    assert judge_self(42, subreaper=True).level == OK
    assert judge_self(42, subreaper=False).level == NOTE


def test_pids_cgroup_at_its_limit_needs_action() -> None:
    """Run inside a real pids cgroup with pids.max 1: the cgroup finding needs action."""
    base = Path("/sys/fs/cgroup/pids")
    if os.geteuid() != 0 or not (base / "cgroup.procs").exists():
        pytest.skip("needs root and the cgroup v1 pids controller")
    group = base / f"undertaker-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "pids.max").write_text("1\n")
        script = f'echo $$ > {group}/cgroup.procs && exec "$@"'
        done = subprocess.run(
            ["sh", "-c", script, "sh", *UNDERTAKER, "doctor", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        group.rmdir()
    assert done.returncode == 1, done.stderr
    [found] = [f for f in json.loads(done.stdout)["findings"] if f["check"].startswith("pids")]
    assert found["check"] == f"pids cgroup {group}"
    assert found["level"] == ACTION
    assert "1 of 1 in use" in found["fact"]
