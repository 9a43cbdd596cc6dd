"""Scans that keep stat files open between them (the exporter's): never the wrong process."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from helpers import needs_namespace, run_in_namespace
from undertaker.proc import HeldStatFiles, scan
from undertaker.proc._held import MAX_HELD

# As PID 1 of a fresh namespace: a child named "first" is scanned through a
# held file, reaped, and its PID handed (ns_last_pid) to a child named "second".
_REUSE = r"""
import ctypes, json, os, signal
from undertaker.proc import HeldStatFiles, scan
libc = ctypes.CDLL(None)
def child(name):
    pid = os.fork()
    if pid == 0:
        libc.prctl(15, name, 0, 0, 0)
        signal.pause()
        os._exit(0)
    return pid
def comm(pid):
    while True:
        with open(f"/proc/{pid}/comm", "rb") as f:
            if f.read().strip() != b"python":
                return
held = HeldStatFiles()
first = child(b"first")
comm(first)
before = scan(owners=False, held=held)
out = {"first": before.processes[first].comm, "held": str(first) in held.fds}
os.kill(first, signal.SIGKILL)
os.waitpid(first, 0)
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(first - 1))
second = child(b"second")
comm(second)
out["reused"] = second == first
during = scan(owners=False, held=held)
out["during"] = during.processes[first].comm if first in during.processes else None
out["vanished"] = during.vanished
after = scan(owners=False, held=held)
out["after"] = after.processes[first].comm
os.kill(second, signal.SIGKILL)
os.waitpid(second, 0)
gone = scan(owners=False, held=held)
out["pruned"] = str(first) not in held.fds and first not in gone.processes
out["held_all"] = sorted(held.fds) == sorted(str(p) for p in gone.processes)
fds_before_close = len(os.listdir("/proc/self/fd"))
count = len(held.fds)
held.close()
out["closed"] = fds_before_close - len(os.listdir("/proc/self/fd")) == count and count > 0
print(json.dumps(out))
"""


@needs_namespace
def test_held_files_never_report_a_reused_pid() -> None:
    """A held file of a reaped process is dropped, even when its PID is reused at once."""
    done = run_in_namespace(_REUSE)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["first"] == "first"
    assert out["held"] is True
    assert out["reused"] is True
    # The scan right after the reuse reads the old file: ESRCH, never "first" again;
    # it opens the PID afresh and finds the new process, which did not vanish.
    assert out["during"] == "second"
    assert out["vanished"] == 0
    assert out["after"] == "second"
    assert out["pruned"] is True
    assert out["held_all"] is True
    assert out["closed"] is True


def test_held_files_are_bound_to_their_root() -> None:
    """A scan of another root cannot use them."""
    held = HeldStatFiles("/proc")
    with pytest.raises(ValueError, match="held for /proc"):
        scan("/tmp", held=held)


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] < MAX_HELD + 1024,
    reason="needs a hard limit on open files above the bound",
)
def test_held_files_are_bounded_whatever_the_file_limit() -> None:
    """A generous file limit (a container's 1,048,576) does not lift the bound on held files."""
    code = (
        "import resource\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # as the exporter does\n"
        "from undertaker.proc import HeldStatFiles, scan\n"
        "held = HeldStatFiles()\n"
        "scan(owners=False, held=held)\n"
        "print(held.capacity, len(held.fds))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    capacity, count = map(int, done.stdout.split())
    assert capacity == MAX_HELD <= 16384  # each pins ~4.5 KB of kernel memory
    assert 0 < count <= capacity
