"""The ptrace remedy under attack: interrupted, in a container, checked word by word.

Each test starts its own parent (tests/reap_parents.py or a small script) and
acts only on it; each checks the zombies went *and* the parent is unharmed.
"""

from __future__ import annotations

import json
import subprocess
import sys

from test_reap_ptrace import PARENT

# Reaps 1,000 zombies of a busy parent in one long stop (max_stop 1 s) and sends
# itself SIGINT (a terminal's ^C) as soon as the parent is traced: mid-stop.
# The tracer must finish that stop (restore, detach) before it is let go;
# killed half-way it would leave the parent running on the injected frame.
_INTERRUPTED = r"""
import json, os, signal, subprocess, sys, threading, time
from undertaker.remedy import reap_via_ptrace
proc = subprocess.Popen([sys.executable, sys.argv[1], "busy", "1000"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
ready = json.loads(proc.stdout.readline())
pid = ready["pid"]

def tracer():
    with open(f"/proc/{pid}/status") as status:
        return int(next(l for l in status if l.startswith("TracerPid")).split()[1])

def interrupt_when_traced():
    deadline = time.monotonic() + 5
    while not tracer() and time.monotonic() < deadline:
        time.sleep(0.0002)
    os.kill(os.getpid(), signal.SIGINT)

watcher = threading.Thread(target=interrupt_when_traced)
watcher.start()
try:
    reap_via_ptrace(pid, ready["zombies"], max_stop=1.0)
    how = "finished"
except KeyboardInterrupt:
    how = "interrupted"
watcher.join()
time.sleep(0.2)  # a helper left behind would go on reaping: let it show
gone = [z for z in ready["zombies"] if not os.path.exists(f"/proc/{z}")]
after = tracer()
report = json.loads(proc.stdout.readline())
print(json.dumps({"how": how, "gone": gone, "zombies": ready["zombies"], "tracer": after,
                  "report": report, "returncode": proc.wait(10)}))
"""


def test_interrupt_mid_stop_lets_the_tracer_restore_the_parent() -> None:
    """^C while the parent is stopped: the stop ends cleanly, the parent computes on unharmed."""
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED, PARENT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["how"] == "interrupted"
    assert out["returncode"] == 0  # before the fix: -11, killed by SIGSEGV
    assert out["tracer"] == 0
    report = out["report"]
    assert report["result"] == [True]
    assert report["other"] == 5 << 8
    # Each zombie was either reaped by us (the parent's wait: ECHILD) or left
    # for the parent, which then reaped it itself with its status intact.
    for i, z in enumerate(out["zombies"]):
        want = "ECHILD" if z in out["gone"] else (3 + i % 200) << 8
        assert report["waits"][str(z)] == want
