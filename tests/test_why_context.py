"""``undertaker why`` where the parent's context changes the fix: a child subreaper (shown
only on the kernel's evidence of adoption), a systemd service."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import cli
from undertaker.testing import sleep_until
from why_scenarios import named_cgroup, python_parent

# A child subreaper with one zombie of its own; its other child forks two
# workers (in a new session when SESSION is "setsid", as a daemon does) and
# exits, so the workers are adopted; they exit once it is reaped. Run by
# why_scenarios.python_parent.
_SUBREAPER = r"""
import ctypes, json, os
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
own = os.fork()
if own == 0:
    os._exit(1)
gate_r, gate_w = os.pipe()
report_r, report_w = os.pipe()
middle = os.fork()
if middle == 0:
    if SESSION == "setsid":
        os.setsid()
    workers = []
    for _ in range(2):
        worker = os.fork()
        if worker == 0:
            os.close(gate_w)
            os.read(gate_r, 1)  # until the subreaper closes the gate
            os._exit(6)
        workers.append(worker)
    os.write(report_w, json.dumps(workers).encode())
    os._exit(0)
os.close(gate_r)
os.close(report_w)
workers = json.loads(os.read(report_r, 4096))
os.waitpid(middle, 0)  # the workers are now adopted
os.close(gate_w)
kids = [own, *workers]
"""


@pytest.mark.parametrize("session", ["setsid", "same"])
def test_subreaper_holding_adopted_orphans(session: str) -> None:
    """Workers of a daemon (its own session) adopted by a subreaper that does not reap them:
    proven adopted, so the verdict and fixes are a subreaper's. Without setsid nothing
    proves the adoption, and nothing is claimed."""
    code = f"SESSION = {session!r}\n" + _SUBREAPER
    with python_parent(code) as (pid, zombies):
        text = cli("why", str(pid))
        done = cli("why", "--json", str(pid))
    assert text.returncode == done.returncode == 1, text.stderr + done.stderr
    [found] = json.loads(done.stdout)["parents"]
    assert sorted(z["pid"] for z in found["zombies"]) == sorted(zombies)
    if session == "same":
        assert found["adopted"] == 0
        assert found["verdict"] == "default-never-waits"
        assert "subreaper" not in text.stdout
        return
    assert found["adopted"] == 2
    assert found["verdict"] == "subreaper-not-reaping"
    assert "2 of these were forked in another session" in found["reason"]
    assert "verdict        subreaper-not-reaping:" in text.stdout
    assert "subreaper      yes: 2 of its zombies were forked in another session" in text.stdout
    hows = [f["how"] for f in found["fixes"]]
    assert "undertaker.Reaper()" in hows[0]
    assert "undertaker.become_subreaper(enable=False)" in hows[1]
    assert any("join" in how or "waitpid" in how for how in hows[2:])  # its own zombie


_TWO_POPEN = """
import subprocess
kids = [subprocess.Popen(["true"]) for _ in range(2)]
"""


def test_parent_in_a_systemd_service_can_be_restarted() -> None:
    """A parent in a real cgroup named as systemd names a service: restarting the service
    is offered, last (it ends the whole service), with the exact command."""
    unit = f"undertaker-test-{os.getpid()}.service"
    with named_cgroup("system.slice", unit) as service, python_parent(_TWO_POPEN) as (pid, _):
        (service / "cgroup.procs").write_text(f"{pid}\n")
        text = cli("why", str(pid))
        done = cli("why", "--json", str(pid))
    assert text.returncode == done.returncode == 1, text.stderr + done.stderr
    [found] = json.loads(done.stdout)["parents"]
    assert found["verdict"] == "default-never-waits"
    last = found["fixes"][-1]
    assert (last["kind"], last["how"]) == ("operational", f"systemctl restart {unit}")
    assert found["fixes"][-2]["how"] == f"undertaker reap --method kill-parent --parent {pid}"
    assert f"systemctl restart {unit}" in text.stdout


@contextmanager
def _freezer_v1(wanted: bool) -> Iterator[Path | None]:
    """A real cgroup of the v1 freezer (when *wanted*), removed once empty."""
    if not wanted:
        yield None
        return
    group = Path(f"/sys/fs/cgroup/freezer/undertaker-test-{os.getpid()}")
    if os.geteuid() != 0 or not group.parent.joinpath("cgroup.procs").exists():
        pytest.skip("needs root and the cgroup v1 freezer")
    group.mkdir()
    try:
        yield group
    finally:
        sleep_until(lambda: not (group / "cgroup.procs").read_text(), 10)
        group.rmdir()


@pytest.mark.parametrize("freezer", ["v2", "v1"])
def test_parent_in_a_frozen_cgroup(freezer: str) -> None:
    """A parent whose cgroup is frozen (docker pause) runs no code: the verdict says so,
    thawing comes first (docker unpause for a Docker container), no ptrace remedy."""
    cid = secrets.token_hex(32)
    with (
        named_cgroup("docker.slice", f"docker-{cid}.scope") as scope,
        _freezer_v1(freezer == "v1") as group,
        python_parent(_TWO_POPEN) as (pid, zombies),
    ):
        (scope / "cgroup.procs").write_text(f"{pid}\n")
        if group is None:  # v2: cgroup.freeze, and cgroup.events says when it is done
            control, freeze, thaw = scope / "cgroup.freeze", "1", "0"
            events = scope / "cgroup.events"
        else:
            (group / "cgroup.procs").write_text(f"{pid}\n")
            control, freeze, thaw = group / "freezer.state", "FROZEN", "THAWED"
            events = control
        control.write_text(freeze + "\n")
        try:
            assert sleep_until(lambda: re.search(r"\b(frozen 1|FROZEN)\b", events.read_text()), 10)
            text = cli("why", str(pid))
            done = cli("why", "--json", str(pid))
        finally:
            control.write_text(thaw + "\n")
    assert text.returncode == done.returncode == 1, text.stderr + done.stderr
    [found] = json.loads(done.stdout)["parents"]
    assert sorted(z["pid"] for z in found["zombies"]) == sorted(zombies)
    assert found["verdict"] == "parent-frozen"
    assert found["frozen"] == str(control)
    assert "runs no code until thawed" in found["reason"]
    hows = [f["how"] for f in found["fixes"]]
    assert hows[:2] == [f"docker unpause {cid[:12]}", f"echo {thaw} > {control}"]
    assert not any("--method ptrace" in how for how in hows)
    assert "verdict        parent-frozen:" in text.stdout
    assert f"echo {thaw} > {control}" in text.stdout
