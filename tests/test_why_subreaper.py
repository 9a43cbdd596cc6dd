"""``undertaker why`` on a child subreaper: adoption shown only on the kernel's evidence."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import cli
from undertaker.testing import proc_state, sleep_until

# A child subreaper with one zombie of its own; its other child forks two
# workers (in a new session when argv[1] is "setsid", as a daemon does) and
# exits, so the workers are adopted; they exit once it is reaped. At EOF on
# stdin everything is reaped.
_SUBREAPER = r"""
import ctypes, json, os, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
own = os.fork()
if own == 0:
    os._exit(1)
gate_r, gate_w = os.pipe()
report_r, report_w = os.pipe()
middle = os.fork()
if middle == 0:
    if sys.argv[1] == "setsid":
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
print(json.dumps({"own": own, "workers": workers}), flush=True)
while os.read(0, 4096):
    pass
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
"""


@pytest.mark.parametrize("session", ["setsid", "same"])
def test_subreaper_holding_adopted_orphans(session: str) -> None:
    """Workers of a daemon (its own session) adopted by a subreaper that does not reap them:
    proven adopted, so the verdict and fixes are a subreaper's. Without setsid nothing
    proves the adoption, and nothing is claimed."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _SUBREAPER, session],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None
    assert parent.stdout is not None
    try:
        kids = json.loads(parent.stdout.readline())
        zombies = [kids["own"], *kids["workers"]]
        assert sleep_until(lambda: all(proc_state(z) == "Z" for z in zombies), 10)
        text = cli("why", str(parent.pid))
        done = cli("why", "--json", str(parent.pid))
    finally:
        parent.stdin.close()
        parent.wait(30)
        parent.stdout.close()
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
