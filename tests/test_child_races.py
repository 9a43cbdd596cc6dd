"""spawn() against other code that reaps its children: never a crash, never a wrong process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import needs_namespace, run_in_namespace

# A thief reaps every child the moment it exits, while a busy thread holds the
# GIL so that the main thread, back from fork and exec, is late to look at its
# new child. The thief is a thread in waitid(P_ALL) (it sleeps in the kernel,
# without the GIL), or in mode "handler" the naive SIGCHLD handler calling
# waitpid(-1) that the issue names. In mode "reuse" (in a PID namespace, where
# we may set ns_last_pid) the thief thread also starts a `sleep` that gets the
# stolen PID: the process a late pidfd_open finds.
THIEF = r"""
import json, os, signal, sys, threading, time
from undertaker import NoSuchProcess, StatusLost, TimeoutExpired, spawn
rounds, mode = int(sys.argv[1]), sys.argv[2]
reuse = mode == "reuse"
sys.setswitchinterval(0.02)
stop = False
decoys, reused = [], []
def thief():
    while not stop:
        try:
            found = os.waitid(os.P_ALL, 0, os.WEXITED)
        except ChildProcessError:
            time.sleep(0.001)
            continue
        if reuse and found is not None and found.si_pid not in decoys:
            with open("/proc/sys/kernel/ns_last_pid", "w") as last:
                last.write(str(found.si_pid - 1))
            decoy = os.posix_spawn("/bin/sleep", ["sleep", "30"], os.environ)
            decoys.append(decoy)
            reused.append(decoy == found.si_pid)
def hog():
    while not stop:
        sum(range(1000))
def naive_handler(*_):
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
if mode == "handler":
    signal.signal(signal.SIGCHLD, naive_handler)
else:
    threading.Thread(target=thief, daemon=True).start()
threading.Thread(target=hog, daemon=True).start()
seen = {"ok": 0, "lost": 0, "crash": 0, "wrong": 0}
for _ in range(rounds):
    try:
        child = spawn(["true"])
    except NoSuchProcess:
        seen["crash"] += 1
        continue
    try:
        status = child.wait(2)
        seen["ok" if status.returncode == 0 else "wrong"] += 1
    except StatusLost:
        seen["lost"] += 1
    except TimeoutExpired:
        seen["wrong"] += 1  # it holds a `sleep`: not the process it started
        child.kill()
stop = True
seen["reused"] = sum(reused)
for pid in decoys:
    try:
        fd = os.pidfd_open(pid)  # the thief is still reaping: hold it by pidfd to kill it
    except ProcessLookupError:
        continue  # killed already, as the wrong process of some Child
    signal.pidfd_send_signal(fd, signal.SIGKILL)
    os.close(fd)
print(json.dumps(seen))
"""


@pytest.mark.parametrize("thief", ["thread", "handler"])
def test_spawn_when_other_code_reaps_every_child(thief: str) -> None:
    """Reaped by other code before spawn() returns: an honest StatusLost, never NoSuchProcess."""
    done = subprocess.run(
        [sys.executable, "-c", THIEF, "30", thief],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert (seen["crash"], seen["wrong"]) == (0, 0), seen
    assert seen["ok"] + seen["lost"] == 30
    assert seen["lost"] > 0, "the thief never struck: the test proves nothing"


@needs_namespace
def test_spawn_never_holds_a_process_that_reused_the_pid() -> None:
    """The stolen PID is given at once to a `sleep`: spawn() must not take it for its child."""
    done = run_in_namespace(THIEF, "20", "reuse")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["reused"] > 0, "no PID was reused: the test proves nothing"
    assert (seen["crash"], seen["wrong"]) == (0, 0), seen
    assert seen["ok"] + seen["lost"] == 20
