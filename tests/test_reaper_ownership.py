"""The Reaper never turns a late waiter's failure into success, and stays robust.

Each experiment runs in a fresh interpreter (``ownership_scenarios.py``,
``reaper_robustness.py``): a stolen status or a hung lock must never touch the
test session itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from helpers import needs_namespace, run_json_script
from undertaker._control_errors import NotSupported
from undertaker._errors import AccessDenied

HERE = Path(__file__).parent


def run(script: str, *args: str, namespace: bool = False, timeout: float = 120) -> Any:
    prefix = ("unshare", "--pid", "--fork", "--mount-proc") if namespace else ()
    return run_json_script(HERE / script, *args, prefix=prefix, timeout=timeout)


def connector_available() -> bool:
    from undertaker.proc._connector import ProcEvents  # noqa: PLC0415

    try:
        ProcEvents().close()
    except (NotSupported, AccessDenied):
        return False
    return True


@pytest.mark.smoke
@pytest.mark.skipif(not connector_available(), reason="needs the proc connector")
def test_late_waiters_keep_their_statuses_while_orphans_storm_with_fork_events() -> None:
    """Every late-waiter pattern of issue 8 plus 32 orphans of 3 kinds: 0 wrong, 0 zombies."""
    result = run("ownership_scenarios.py", "on")
    print(result)
    assert result["events"] is True
    assert result["wrong"] == {}
    # Every storm orphan, and the background job of the subprocess.run pattern.
    assert result["orphans_reaped"] == result["orphans_made"] + 1 == 33
    assert result["orphan_codes"] == [0, 5, 6, 7, 8]
    assert result["zombies_after_storm"] == 0
    assert result["unproven_reported"] == 0  # fork events prove our own children ours
    assert result["left_alone_then_cleaned"] == 0
    assert "the kernel's" in result["evidence"]


def test_late_waiters_keep_their_statuses_from_walks_and_sessions_alone() -> None:
    """Without fork events: walks and sessions prove slow orphans and daemons; fast ones leak."""
    result = run("ownership_scenarios.py", "off")
    print(result)
    assert result["events"] is False
    assert result["wrong"] == {}
    assert result["orphans_made"] == 16
    # The 16 slow orphans and daemons are proven. The three fast ones (the
    # background job, then two more) carry no evidence unless a walk happened
    # to see them: each is either reaped with evidence or left alone, reported,
    # never reaped, and cleaned up by the scenario itself.
    assert result["orphans_reaped"] + result["left_alone_then_cleaned"] == 16 + 3
    assert result["orphans_reaped"] >= 16
    assert set(result["orphan_codes"]) <= {0, 5, 6, 7, 8}
    assert {5, 6} <= set(result["orphan_codes"])
    assert result["evidence"] == ["born in", "seen earlier"]
    assert result["unproven_reported"] >= result["left_alone_then_cleaned"]


def test_fork_leaves_an_inert_copy_that_never_hangs() -> None:
    """100 forks while the reaper thread is busy: the child's copy is stopped and never hangs."""
    result = run("reaper_robustness.py", "fork_copies", "100")
    assert result == {"forks": 100, "hung": 0, "broken": 0, "parent_running": True}


def test_thread_survives_running_out_of_descriptors() -> None:
    """EMFILE during passes is recorded and logged; the thread lives on and reaps later."""
    result = run("reaper_robustness.py", "emfile")
    assert result == {"errors_seen": True, "thread_alive": True, "orphan_reaped_after": True}


@pytest.mark.smoke
def test_impossible_intervals_are_refused_up_front() -> None:
    """interval=inf/nan/0 and a negative grace raise ValueError; a huge interval is capped."""
    result = run("reaper_robustness.py", "bad_intervals")
    assert result["refused"] == dict.fromkeys(
        ["interval_inf", "interval_nan", "interval_zero", "grace_negative"], True
    )
    assert result["huge_interval_thread_alive"] is True


@pytest.mark.parametrize("mode", ["thread", "threadless"])
def test_stop_from_a_signal_handler_does_not_deadlock(mode: str) -> None:
    """stop() from a handler that interrupted reap() completes when reap() returns."""
    result = run("reaper_robustness.py", "stop_from_handler", mode, timeout=30)
    print(result)
    assert result["stopped"] is True
    assert result["handler_returned"] is True
    assert result["seconds"] < 5


def test_threadless_reaper_warns_when_its_handler_is_replaced() -> None:
    """Other code replacing the SIGCHLD handler is detected at the next manage()."""
    result = run("reaper_robustness.py", "replaced_handler")
    assert len(result["warnings"]) == 1
    assert "replaced the Reaper's" in result["warnings"][0]
    assert result["reaped"] is True  # reap() still works


def test_orphans_running_at_stop_are_reaped_later() -> None:
    """An adopted orphan still running at stop() is handed on, not left to become a zombie."""
    result = run("reaper_robustness.py", "orphan_running_at_stop")
    assert result == {"adopted": True, "at_stop": "S", "reaped_later": True}


def test_a_sigchld_handler_from_c_is_never_replaced() -> None:
    """auto leaves a C handler alone though Python reports SIG_DFL; True refuses it."""
    result = run("reaper_robustness.py", "c_handler")
    assert result["auto_installed"] is False
    assert result["kept"] is True
    assert result["forced"] == "UndertakerError"


@needs_namespace
def test_a_claim_ends_with_its_process_not_its_pid() -> None:
    """claim() keeps one orphan for its claimant; a later orphan with the same PID is reaped."""
    result = run("reaper_robustness.py", "claim_identity", namespace=True)
    assert result == {
        "kept_for_claimant": True,
        "claimant_code": 5,
        "claims_after": 0,
        "same_pid": True,
        "second_reaped": True,
    }


def test_connector_unsubscribes_and_names_the_forker() -> None:
    """The connector reports our fork with our PID as the parent, then closes cleanly."""
    if not connector_available():
        pytest.skip("needs the proc connector")
    from undertaker.proc._connector import ProcEvents  # noqa: PLC0415
    from undertaker.testing import sleep_until  # noqa: PLC0415

    with ProcEvents() as events:
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        os.waitpid(pid, 0)
        forks, exits = [], []

        def seen() -> bool:
            more_forks, more_exits, _ = events.read()
            forks.extend(f for f in more_forks if f.child_pid == pid)
            exits.extend(e for e in more_exits if e.pid == pid)
            return bool(forks and exits)

        assert sleep_until(seen, 5)
    assert forks[0].parent_tgid == os.getpid()
    assert exits[0].status == 3 << 8
    assert exits[0].parent_tgid == os.getpid()
    with pytest.raises(ValueError, match="closed"):
        events.fileno()
