"""The cooperative Reaper: reaps orphans and handed-over children, steals no status.

Every experiment runs in a fresh interpreter (``reaper_scenarios.py``) so a
naive handler or a stolen status can never corrupt the test session itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import run_json_script

SCENARIOS = Path(__file__).with_name("reaper_scenarios.py")


def scenario(*args: str, timeout: float = 90) -> Any:
    return run_json_script(SCENARIOS, *args, timeout=timeout)


@pytest.mark.smoke
def test_200_runs_across_8_threads_keep_their_exit_codes() -> None:
    """200 runs on 8 threads and 100 in the main thread, 80 orphans adopted: 0 wrong codes."""
    result = scenario("stress", "reaper", "200", "8", "40", "100")
    print(result)
    assert result["wrong"] == 0
    assert result["main_wrong"] == 0  # filed under the adopter thread: evidence must hold
    assert result["orphans_reaped"] == result["orphans_made"] == 80
    assert result["orphan_codes"] == [5, 6]
    assert result["zombies_left"] == 0


def test_naive_waitpid_handler_corrupts_exit_codes() -> None:
    """Negative control: the same workload under a waitpid(-1) handler gets codes wrong."""
    result = scenario("stress", "naive", "200", "8", "40", "100")
    print(result)
    assert result["wrong"] > 0
    assert result["main_wrong"] > 0
    assert result["zombies_left"] == 0


def test_stdlib_owners_keep_their_statuses() -> None:
    """Main-thread subprocess, multiprocessing, asyncio and os.waitpid all see true codes."""
    result = scenario("stdlib_owners")
    assert result == {
        "runs_wrong": 0,
        "multiprocessing": 5,
        "asyncio": 9,
        "waitpid": 4,
        "reaped_by_reaper": [],
    }


def test_late_waiter_keeps_its_status_without_claim() -> None:
    """A main-thread child waited for long after its exit: nothing proves it adopted: kept."""
    assert scenario("late_waiter", "no") == {"returncode": 7}


def test_claim_protects_a_late_waiter() -> None:
    """claim(pid) keeps the status for the code that will wait later."""
    assert scenario("late_waiter", "claim") == {"returncode": 7}


def test_managed_child_is_reaped_and_reported() -> None:
    """manage(pid) reaps the child when it exits and calls on_exit with its status."""
    result = scenario("manage")
    assert result["seen"] == [[result["pid"], "exited 3"]]
    assert result["state_after"] is None


def test_threadless_manage_reaps_a_child_that_already_exited() -> None:
    """Threadless: a zombie handed over after its SIGCHLD is reaped by manage() at once."""
    result = scenario("threadless_exited_first")
    pid = result["pid"]
    assert (result["before"], result["after"]) == ("Z", None)
    assert result["seen"] == result["history"] == [[pid, "exited 3"]]


@pytest.mark.parametrize("mode", ["thread", "threadless"])
def test_manage_twice_and_after_stop_are_refused(mode: str) -> None:
    """A second manage() of one PID, or one after stop(), is refused; no pidfd leaks."""
    result = scenario("manage_twice", mode)
    print(result)
    base = result["pidfds_before"]
    assert result["pidfds_managed"] == base + 1
    assert "already handed over" in result["second"]
    assert result["pidfds_after_second"] == base + 1  # the second pidfd was closed
    assert result["seen"][0][0] == "first"  # the first callback is kept
    assert [s[2] for s in result["seen"]] == ["exited 4"]
    assert result["state"] is None
    assert result["pidfds_after_exit"] == base
    assert "not running" in result["after_stop"]
    assert result["pidfds_after_stop"] == base
    assert result["late_code"] == 5


def test_threadless_reaper_refuses_orphans() -> None:
    """Threadless, an orphan past its grace would wait for a SIGCHLD that may never come."""
    result = scenario("orphan_after_grace", "threadless")
    assert "needs thread=True" in result["refused"]


def test_orphan_is_reaped_when_its_grace_ends() -> None:
    """With the thread, one orphan and no later SIGCHLD: reaped soon after grace (0.2 s)."""
    result = scenario("orphan_after_grace", "thread")
    print(result)
    assert result["reaped"]
    assert result["codes"] == [5]
    assert result["seconds"] < 1.5


@pytest.mark.smoke
def test_sigchld_handler_policy() -> None:
    """auto never replaces a handler; sigchld=True chains to it; stop restores the old one."""
    assert scenario("handler_policy") == {
        "default_installed": True,
        "restored_default": True,
        "auto_with_handler": False,
        "still_mine": True,
        "forced": True,
        "chained": True,
        "restored_mine": True,
    }
