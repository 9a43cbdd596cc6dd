"""PID pressure from the pids cgroup: a real cgroup with a real limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from undertaker.proc._system import _cgroup_dirs


def _pids_cgroup_parent() -> Path | None:
    if os.geteuid() != 0:
        return None
    for candidate in _cgroup_dirs("/proc"):
        path = Path(candidate)
        if path.is_dir() and os.access(path, os.W_OK):
            return path
    return None


PARENT = _pids_cgroup_parent()


def run_limited(limit: int, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run ``undertaker ARGS`` alone in a new pids cgroup with pids.max *limit*.

    The child joins the cgroup before it execs, so the command and its
    interpreter count against the limit. Returns the run and the cgroup's
    path (removed by then).
    """
    assert PARENT is not None
    group = PARENT / f"undertaker-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "pids.max").write_text(f"{limit}\n")
        code = (
            f"import os, sys; open({str(group / 'cgroup.procs')!r}, 'w').write(str(os.getpid()));"
            f"os.execv(sys.executable, [sys.executable, '-m', 'undertaker', *{list(args)!r}])"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        group.rmdir()  # empty again: the child has exited
    return done, group


@pytest.mark.skipif(PARENT is None, reason="needs root and a writable pids cgroup")
def test_ps_reports_the_pids_cgroup_limit() -> None:
    """Inside a cgroup with pids.max 64, ps reports the current count against 64."""
    done, group = run_limited(64, "ps", "--json")
    assert done.returncode in (0, 1), done.stderr
    cgroup = json.loads(done.stdout)["pids"]["cgroup"]
    assert cgroup["max"] == 64
    assert cgroup["path"] == str(group)
    assert 1 <= cgroup["current"] <= 64


@pytest.mark.skipif(PARENT is None, reason="needs root and a writable pids cgroup")
def test_ps_in_a_frozen_cgroup_says_fork_blocked() -> None:
    """pids.max 0 (how a fork bomb is frozen): ps still runs and says fork is blocked."""
    assert PARENT is not None
    group = PARENT / f"undertaker-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        # The child joins the cgroup, waits for a go, then execs ps: exec needs no new PID.
        code = (
            f"import os, sys; open({str(group / 'cgroup.procs')!r}, 'w').write(str(os.getpid()));"
            "print('joined', flush=True); sys.stdin.readline();"
            "os.execv(sys.executable,"
            " [sys.executable, '-m', 'undertaker', 'ps', '--color', 'never'])"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == "joined\n"
        (group / "pids.max").write_text("0\n")
        out, err = proc.communicate("go\n", timeout=60)
        assert proc.returncode in (0, 1), err
        assert "cgroup pids: 1/0 (fork blocked)" in out
    finally:
        group.rmdir()
