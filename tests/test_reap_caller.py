"""reap_via_ptrace in a caller that ignores SIGCHLD (a common way to never leave zombies).

There the kernel reaps the caller's children itself, the forked tracer too:
waiting for it failed with ChildProcessError, after the zombies were reaped,
and their statuses were lost with the result.
"""

from __future__ import annotations

import json
import subprocess
import sys

from test_reap_ptrace import PARENT

_IGNORING = r"""
import json, signal, subprocess, sys
from undertaker.remedy import reap_via_ptrace
proc = subprocess.Popen([sys.executable, sys.argv[1], "pipe", "3"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
ready = json.loads(proc.stdout.readline())
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
result = reap_via_ptrace(ready["pid"], ready["zombies"])
signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # proc is waited for as usual
proc.stdin.write("go on\n")
proc.stdin.flush()
report = json.loads(proc.stdout.readline())
print(json.dumps({"zombies": ready["zombies"], "reaped": result.reaped,
                  "statuses": [o.status.exit_code for o in result.outcomes],
                  "report": report, "returncode": proc.wait(10)}))
"""


def test_a_caller_ignoring_sigchld_gets_its_result() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IGNORING, PARENT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr  # before the fix: ChildProcessError
    out = json.loads(done.stdout)
    assert out["reaped"] == out["zombies"]
    assert out["statuses"] == [3, 4, 5]
    assert out["report"]["waits"] == {str(z): "ECHILD" for z in out["zombies"]}
    assert out["report"]["result"] == "go on\n"
    assert out["returncode"] == 0
