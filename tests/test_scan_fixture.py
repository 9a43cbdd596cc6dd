"""The scanner and the CLI on a captured /proc tree with hostile entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import cli
from undertaker.census import take_census
from undertaker.proc import scan

FIXTURES = str(Path(__file__).parent / "fixtures" / "proc")


@pytest.mark.smoke
def test_scan_counts_hostile_entries() -> None:
    """Malformed stat files are counted unreadable, a missing one vanished, odd names skipped."""
    snap = scan(FIXTURES)
    assert sorted(snap.processes) == [2, 22, 25, 10346, 10347, 10348, 10349]
    assert snap.unreadable == 3  # 20 truncated, 21 no parentheses, 23 non-numeric
    assert snap.vanished == 1  # 24 has no stat
    assert snap.pid_max == int(Path(FIXTURES, "sys/kernel/pid_max").read_text())
    assert snap.processes[22].comm == "x) R 0\n"
    assert snap.processes[25].comm == "\\xff\\xfe"


def test_scan_agrees_with_parse_stat() -> None:
    """The scan's inlined parser gives the same fields as parse_stat on every entry."""
    from undertaker.proc import parse_stat  # noqa: PLC0415

    for proc in scan(FIXTURES).processes.values():
        fields = parse_stat(Path(FIXTURES, str(proc.pid), "stat").read_bytes())
        assert (proc.comm, proc.state, proc.ppid, proc.pgid, proc.sid) == fields[:5]
        assert (proc.threads, proc.start_ticks) == (fields.threads, fields.start_ticks)
        if proc.state == "Z":
            assert proc.exit_code == fields.exit_code


def test_scan_zombies_and_leaders() -> None:
    """Two true zombies under one parent; the leader is apart; NSpid read for zombies."""
    snap = scan(FIXTURES)
    assert [p.pid for p in snap.zombies] == [10347, 10348]
    assert [p.pid for p in snap.zombie_leaders] == [10349]
    assert snap.processes[10347].uid is not None
    assert snap.state_counts["Z"] == 3
    assert snap.pids_used == sum(p.threads or 1 for p in snap.processes.values())
    assert [p.pid for p in snap.children(10346)] == [22, 10347, 10348]


def test_census_groups_by_parent() -> None:
    """The census puts both zombies under 10346 with their decoded statuses."""
    census = take_census(scan(FIXTURES), ages=False)
    assert len(census.parents) == 1
    group = census.parents[0]
    assert group.pid == 10346
    assert group.cmdline is not None
    assert group.cmdline[1:3] == ["-I", "-S"]
    assert dict(group.statuses) == {"exited 7": 1, "killed by SIGSEGV": 1}
    assert [z.nspid for z in group.zombies] == [(10347,), (10348,)]
    assert [p.pid for p in census.leaders] == [10349]


def test_cli_json_on_fixture() -> None:
    """--json has the documented keys and the zombies' exit statuses."""
    done = cli("ps", "--json", "--proc", FIXTURES)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert {"version", "zombies", "parents", "states", "pids", "zombie_leaders"} <= set(doc)
    assert doc["states"]["Z"] == 3
    assert doc["pids"]["max"] == int(Path(FIXTURES, "sys/kernel/pid_max").read_text())
    by_pid = {z["pid"]: z for z in doc["zombies"]}
    assert by_pid[10347]["exit"]["code"] == 7
    assert by_pid[10347]["nspid"] == [10347]
    assert by_pid[10348]["exit"]["signal"] == 11
    assert by_pid[10348]["exit"]["text"] == "killed by SIGSEGV"
    assert by_pid[10348]["exit"]["shell_code"] == 139
    assert by_pid[10348]["comm"] == "a) Z 1 (b"
    assert doc["parents"][0]["pid"] == 10346
    assert doc["parents"][0]["zombie_pids"] == [10347, 10348]
    assert [p["pid"] for p in doc["zombie_leaders"]] == [10349]
    assert doc["unreadable"] == 3


def test_cli_table_on_fixture() -> None:
    """The human view names the parent, counts, statuses, and escapes a newline name."""
    done = cli("ps", "--proc", FIXTURES, "--color", "never")
    assert done.returncode == 1
    out = done.stdout
    assert "2 zombies under 1 parent" in out
    assert "exited 7" in out
    assert "killed by SIGSEGV" in out
    assert "a) Z 1 (b" in out
    assert "1 zombie leader" in out
    assert "\x1b[" not in out
    assert "3 processes could not be read" in out


def test_cli_all_on_fixture() -> None:
    """--all lists every process; a hostile newline name stays on one line."""
    done = cli("ps", "--all", "--proc", FIXTURES, "--color", "never")
    lines = done.stdout.splitlines()
    assert any("<defunct>" in line and "10347" in line for line in lines)
    assert any("<zombie leader>" in line and "10349" in line for line in lines)
    assert any(line.rstrip().endswith("x) R 0\\n") for line in lines)
    assert len([line for line in lines if line.lstrip().startswith(("2 ", "22 ", "25 "))]) == 3


def test_cli_tree_on_fixture() -> None:
    """tree --zombies keeps only the branch to the zombies and the leader."""
    done = cli("tree", "--zombies", "--proc", FIXTURES, "--color", "never", "--ascii")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "10346 zparent [2 zombies]"
    assert lines[1] == "|- 10347 zparent <defunct> exited 7"
    assert lines[2] == "`- 10348 a) Z 1 (b <defunct> killed by SIGSEGV"
    assert lines[3].startswith("10349 python <zombie leader")
    assert not any("kthreadd" in line for line in lines)
