"""reap where /proc shows another PID namespace (nsenter -m): refused before any act.

There, /proc's PID N is not our PID N: a pidfd opened for N would name
another process of ours (PID 1 would be the host's init). Every method must
refuse with the reason, exit 2, and leave the zombies and their parent alone.
"""

from __future__ import annotations

import subprocess

import pytest

from helpers import UNDERTAKER, needs_namespace
from undertaker.testing import ZombieParent, ZombieSpec, proc_state
from why_scenarios import TWO_ZOMBIES, python_parent


@needs_namespace
@pytest.mark.parametrize(
    "args",
    [
        ["2", "--method", "ptrace", "--yes"],
        ["--all", "--method", "ptrace", "--yes"],
        ["--parent", "1", "--method", "nudge"],
        ["2", "--method", "kill-parent", "--yes"],
        ["2", "--method", "ptrace"],  # the dry run names no process of ours either
    ],
)
def test_reap_in_a_view_of_another_pid_namespace_is_refused(args: list[str]) -> None:
    # The namespace's PID 1 forks two zombies (its PIDs 2 and 3) and never waits.
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    with python_parent(TWO_ZOMBIES, prefix) as (pid, kids):
        enter = ["nsenter", "-t", str(pid), "-m", *UNDERTAKER, "reap", *args]
        done = subprocess.run(enter, capture_output=True, text=True, timeout=60, check=False)
        states = [proc_state(kid) for kid in kids]
        parent_state = proc_state(pid)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "shows a PID namespace other than ours" in done.stderr
    assert "nsenter -t PID -p -m" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert states == ["Z", "Z"]
    assert parent_state == "S"


@needs_namespace
def test_reap_from_a_nested_namespace_reading_the_hosts_proc_is_refused() -> None:
    """unshare --pid without --mount-proc: /proc is the host's, our PIDs are the nested ones."""
    with ZombieParent([ZombieSpec(code=3)]) as parent:
        zombie = parent.zombies[0]
        nested = ["unshare", "--pid", "--fork", *UNDERTAKER, "reap", str(zombie)]
        done = subprocess.run(
            [*nested, "--method", "ptrace", "--yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        state = proc_state(zombie)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "shows a PID namespace other than ours" in done.stderr
    assert state == "Z"
