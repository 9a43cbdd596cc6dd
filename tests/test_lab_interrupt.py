"""undertaker lab stopped part-way, or started with odd signal dispositions.

A lab stopped by Ctrl-C, kill or timeout(1) must still kill and reap what
the running experiment made (stopped processes in other sessions, a pids
cgroup); a lab started by nohup or as a script's background job inherits
ignored signals, which must not reach the experiments' processes.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import uuid

from tests.test_lab import EXPECTED

# The sandbox, as the CLI starts it in subreaper mode, stopped as timeout(1)
# stops a command (SIGTERM to its whole process group) at the experiment's
# first process table, when its processes are all there.
_STOPPED_MIDWAY = r"""
import json, os, signal, sys
from undertaker.lab import _core, _sandbox
take = _core.Lab.ps
def ps(self, label, pids):
    rows = take(self, label, pids)
    sys.stderr.write("ROWS " + json.dumps(rows) + "\n")
    sys.stderr.flush()
    os.killpg(0, signal.SIGTERM)
    return rows
_core.Lab.ps = ps
sys.argv = ["sandbox", "subreaper", sys.argv[1]]
_sandbox.main()
"""


def _alive(pid: int) -> bool:
    """Whether *pid* still exists (the test session, a subreaper, would adopt a leak)."""
    return os.path.exists(f"/proc/{pid}")


def test_a_stop_signal_midway_ends_the_experiment_and_clears_everything() -> None:
    """SIGTERM mid-experiment: an error result, and no process or cgroup survives."""
    groups = set(_lab_cgroups())
    for exp_id in ("tty-ctrl-z", "pid-exhaustion"):
        done = subprocess.run(
            [sys.executable, "-c", _STOPPED_MIDWAY, exp_id],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            process_group=0,
        )
        rows = next(
            json.loads(line[5:]) for line in done.stderr.splitlines() if line.startswith("ROWS ")
        )
        made = [row["pid"] for row in rows if row["state"] is not None]
        assert done.returncode == 0, (exp_id, done.stderr)
        result = json.loads(done.stdout)
        assert result["status"] == "error"
        assert result["why"] == "stopped by SIGTERM"
        assert result["left_behind"], "the stop came while its processes were there"
        assert not [pid for pid in made if _alive(pid)], exp_id
    assert set(_lab_cgroups()) == groups


def _lab_cgroups() -> list[str]:
    """The pids cgroups pid-exhaustion makes (v1 or v2)."""
    return glob.glob("/sys/fs/cgroup/pids/undertaker-lab-*") + glob.glob(
        "/sys/fs/cgroup/undertaker-lab-*"
    )


def test_ignored_signals_inherited_by_the_lab_do_not_change_verdicts() -> None:
    """Started as `nohup ... &` would: SIGHUP, SIGINT, SIGQUIT ignored; verdicts unchanged."""
    ids = ["tty-ctrl-c", "tty-ctrl-backslash", "pdeathsig"]
    script = (
        "import json, signal, sys\n"
        "from undertaker.lab import run_isolated\n"
        "for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):\n"
        "    signal.signal(sig, signal.SIG_IGN)\n"
        "print(json.dumps([run_isolated(i) for i in sys.argv[1:]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *ids],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = {r["id"]: r["status"] for r in json.loads(done.stdout)}
    assert got == {i: EXPECTED[i] for i in ids}


def test_run_stopped_by_sigterm_says_so_and_leaves_nothing() -> None:
    """timeout(1)-style SIGTERM to the CLI's group: exit 143, one line, no process left."""
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "undertaker", "lab", "run", "--all", "--color", "never"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "UNDERTAKER_TEST_MARKER": marker},
        process_group=0,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("== mp-unjoined"), first
    os.killpg(proc.pid, signal.SIGTERM)  # the next experiment is running now
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert len(err.splitlines()) == 1
    assert err.startswith("undertaker lab run: stopped by SIGTERM after ")
    assert _marked(marker) == []


def _marked(marker: str) -> list[int]:
    """Processes whose environment carries *marker*: what the run left."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as env:
                    if marker.encode() in env.read():
                        found.append(int(name))
            except OSError:
                continue  # gone, or not ours to read
    return found
