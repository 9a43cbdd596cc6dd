"""undertaker lab on the command line: list, run, --json, the summary and the errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests.helpers import AS_NOBODY, cli

from undertaker.cli._lab_view import render_result
from undertaker.cli._style import Style
from undertaker.cli.lab import exit_status
from undertaker.lab import EXPERIMENTS


def test_list_shows_every_experiment_with_its_article() -> None:
    """lab list: each experiment's id, article and claim, the claim wrapped within 80 columns."""
    done = cli("lab", "list")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for exp in EXPERIMENTS:
        first = next(i for i, line in enumerate(lines) if line.startswith(exp.id + " "))
        assert lines[first].split()[1] == exp.seed
        entry = [lines[first][31:]]
        entry += [line.strip() for line in lines[first + 1 :] if line.startswith(" " * 31)][:3]
        assert exp.claim in " ".join(entry)


def test_run_output_is_readable_at_80_columns() -> None:
    """Claims, observations, verdicts and the summary wrap to the width; nothing is lost."""
    done = cli("lab", "run", "handler-once", "waitpid-options", "--color", "never")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    text = " ".join(line.strip() for line in lines)
    assert "WCONTINUED since Linux 2.6.10" in text
    assert "a SIGCHLD handler that calls waitpid() once per signal collects every child" in text


@pytest.mark.smoke
def test_list_json() -> None:
    """lab list --json: the versioned document, the same ids in the same order."""
    done = cli("lab", "list", "--json")
    doc = json.loads(done.stdout)
    assert doc["version"] == 1
    assert [e.id for e in EXPERIMENTS] == [e["id"] for e in doc["experiments"]]
    assert all(e["article"] for e in doc["experiments"])


@pytest.mark.smoke
def test_run_one_prints_claim_table_observation_and_verdict() -> None:
    """lab run ID: the claim, the process-table lines, what was seen, the verdict."""
    done = cli("lab", "run", "kill9-zombie", "--color", "never")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "claim     kill -9 cannot remove a zombie" in out
    assert "PID  PPID  PGID  S  EXIT" in out
    assert "exited 7  father  <defunct>" in out
    assert "observed  kill(" in out
    assert "verdict   CONFIRMED: " in out
    assert "Summary" not in out  # one experiment: no summary


def test_run_json_schema() -> None:
    """lab run --json: version, isolation, each result with its observations, the counts."""
    done = cli("lab", "run", "sigign-late", "kill-parent", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["version"] == 1
    assert doc["isolation"] in ("pid-namespace", "subreaper")
    late, killed = doc["experiments"]
    assert [late["id"], killed["id"]] == ["sigign-late", "kill-parent"]
    assert late["status"] == "depends"
    assert late["seed"] == "004"
    assert late["article"].startswith("Orphans and zombies")
    assert late["data"]["state_after_ign"] == "Z"
    assert late["tables"][0]["rows"][1]["state"] == "Z"
    assert killed["data"]["adopted"] is True
    for result in doc["experiments"]:
        assert set(result) >= {"claim", "why", "observed", "data", "tables", "left_behind"}
        assert result["left_behind"] == []
        assert result["seconds"] > 0
    assert doc["summary"] == {"confirmed": 1, "refuted": 0, "depends": 1, "skipped": 0, "error": 0}


def test_unknown_id_is_one_line_and_exit_3() -> None:
    """An unknown id: one line naming it and how to see the ids, exit 3; nothing runs."""
    done = cli("lab", "run", "kill9-zombie", "no-such-thing")
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        (
            "undertaker lab run: error: no experiment 'no-such-thing' "
            "(undertaker lab list shows the ids)"
        )
    ]


def test_usage_errors_exit_2() -> None:
    """Neither ids nor --all, both, or no action: one line, exit 2."""
    for args in (["lab", "run"], ["lab", "run", "--all", "kill9-zombie"], ["lab"]):
        done = cli(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stdout == ""


def test_exit_status_tells_an_error_from_a_refuted_claim() -> None:
    """Refuted, depends and skipped are results (0); an experiment that failed is 1."""
    assert exit_status([{"status": "refuted"}, {"status": "skipped"}, {"status": "depends"}]) == 0
    assert exit_status([{"status": "confirmed"}, {"status": "error"}]) == 1


def test_a_failed_experiment_is_shown_as_such() -> None:
    """An error and a skip print their reason, the error its traceback's last lines."""
    base = {
        "id": "x",
        "seed": "004",
        "isolation": "subreaper",
        "claim": "c",
        "tables": [],
        "observed": [],
        "left_behind": [],
    }
    text = render_result(
        {
            **base,
            "status": "error",
            "why": "TimeoutError: late",
            "stderr": "Traceback\n  boom\nTimeoutError: late\n",
        },
        Style(enabled=False),
    )
    assert "verdict   ERROR: TimeoutError: late" in text
    assert "  TimeoutError: late" in text
    skipped = render_result(
        {**base, "status": "skipped", "why": "needs root"}, Style(enabled=False)
    )
    assert "verdict   SKIPPED: needs root" in skipped


def test_run_all_as_an_unprivileged_user() -> None:
    """As uid 65534: every experiment runs under a subreaper, none fails, nothing is left."""
    done = subprocess.run(
        [*AS_NOBODY, sys.executable, "-m", "undertaker", "lab", "run", "--all", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["isolation"] == "subreaper"
    assert doc["summary"]["error"] == 0
    assert len(EXPERIMENTS) == len(doc["experiments"])
    assert all(r["left_behind"] == [] for r in doc["experiments"])
    pid_limit = next(r for r in doc["experiments"] if r["id"] == "pid-exhaustion")
    assert pid_limit["data"]["limit"].startswith("RLIMIT_NPROC")
    assert pid_limit["status"] == "confirmed"


_LEAKY = r"""
import json, os, time
import undertaker
from undertaker.lab._core import Lab, children
from undertaker.lab._sandbox import _sweep
undertaker.become_subreaper()
lab = Lab(namespace=False)
sleeper = lab.fork(time.sleep, 30, name="leaked")
def orphaner():
    if os.fork() == 0:
        time.sleep(30)
    return 0
middle = lab.fork(orphaner, name="orphaner")
dead = lab.fork(lambda: 0, name="unreaped")
lab.until(lambda: lab.state(dead) == "Z" and lab.state(middle) == "Z", 5)
left = _sweep(lab)
print(json.dumps({"left": left, "children_after": children()}))
"""


def test_sandbox_reports_and_clears_what_an_experiment_left() -> None:
    """The sweep lists live processes, orphans and zombies left behind, then clears them."""
    done = subprocess.run(
        [sys.executable, "-c", _LEAKY], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    names = sorted(row["comm"] for row in report["left"])
    assert names == ["leaked", "orphaner", "orphaner", "unreaped"]
    states = {row["comm"]: row["state"] for row in report["left"] if row["comm"] != "orphaner"}
    assert states["unreaped"] == "Z"
    assert report["children_after"] == []
