"""The reads after a scan, per zombie (issue 8, item 5): fewer, and still exact.

``undertaker ps`` used to open three files per zombie (status for NSpid, sched
for the time of death, stat to re-check identity). It now opens one (sched);
these tests pin that down and check that nothing it skips could have changed
the answer: zombies in a child PID namespace, PIDs reused since the scan.
"""

from __future__ import annotations

import json
import os
import time

from helpers import needs_namespace, run_in_namespace
from undertaker.census import take_census
from undertaker.proc import parse_stat, scan
from undertaker.testing import ZombieParent, ZombieSpec

# The files each process's /proc directory had opened during take_census: an
# audit hook sees every open(), ours and the library's, in a namespace where
# we are PID 1 (so nothing else's zombies are read).
OPENS = r"""
import json, os, sys
from undertaker.census import take_census
from undertaker.proc import scan
from undertaker.testing import ZombieParent, ZombieSpec

opened = []
recording = False

def hook(event, args):
    if event == "open" and recording:
        opened.append(os.fsdecode(args[0]))

sys.addaudithook(hook)

def per_process(paths):
    found = {}
    for path in paths:
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "proc" and parts[2].isdigit():
            found.setdefault(parts[2], []).append(parts[3])
    return found

with ZombieParent([ZombieSpec(code=3)] * 20) as parent:
    snap = scan(owners=False)
    recording = True
    aged = take_census(snap)
    aged_opened = per_process(opened)
    opened.clear()
    bare = take_census(snap, ages=False)
    bare_opened = per_process(opened)
    recording = False
    print(json.dumps({
        "parent": parent.pid, "zombies": parent.zombies,
        "aged": {z.process.pid: [list(z.nspid), z.exited_at, str(z.status)] for z in aged.zombies},
        "bare": {z.process.pid: [list(z.nspid), z.exited_at] for z in bare.zombies},
        "aged_opened": aged_opened, "bare_opened": bare_opened,
    }))
"""


@needs_namespace
def test_census_opens_one_file_per_zombie() -> None:
    """sched only, and nothing at all without ages; NSpid and identity come cheaper."""
    done = run_in_namespace(OPENS)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    zombies = [str(pid) for pid in doc["zombies"]]
    assert sorted(doc["aged"]) == sorted(zombies)
    for pid in zombies:
        nspid, exited_at, status = doc["aged"][pid]
        assert nspid == [int(pid)]  # our own namespace: one level
        assert exited_at is not None
        assert status == "exited 3"
        assert doc["aged_opened"][pid] == ["sched"]
        assert doc["bare"][pid] == [[int(pid)], None]
        assert pid not in doc["bare_opened"]
    # Per parent: its command line, its NSpid (is it PID 1 of a namespace?),
    # and its start time for the identity check.
    assert sorted(doc["aged_opened"][str(doc["parent"])]) == ["cmdline", "stat", "status"]


# A zombie in a child PID namespace whose parent lives in ours: the holder
# unshares CLONE_NEWPID, so its first child is PID 1 of a new namespace, and
# lets it die without reaping it. Its parent's ns/pid link is the same as
# ours; only the zombie's own link tells that its NSpid has two levels.
HOLDER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x20000000) != 0:  # CLONE_NEWPID
    sys.exit(f"unshare: errno {ctypes.get_errno()}")
pid = os.fork()
if pid == 0:
    os._exit(5)
print(pid, flush=True)
sys.stdin.read()
os.waitpid(pid, 0)
"""

NESTED = r"""
import json, os, subprocess, sys
from undertaker.census import take_census
from undertaker.proc import scan
from undertaker.testing import ZombieParent, ZombieSpec, proc_state, sleep_until

holder = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
try:
    nested = int(holder.stdout.readline())
    assert sleep_until(lambda: proc_state(nested) == "Z"), "the nested init did not die"
    with ZombieParent([ZombieSpec(code=4)]) as parent:
        census = take_census(scan(owners=False))
        found = {z.process.pid: z for z in census.zombies}
        print(json.dumps({
            "nested": nested, "plain": parent.zombies[0],
            "found": {pid: [list(z.nspid), str(z.status), z.exited_at is not None]
                      for pid, z in found.items()},
            "links": {"self": os.readlink("/proc/self/ns/pid"),
                      "holder": os.readlink(f"/proc/{holder.pid}/ns/pid"),
                      "nested": os.readlink(f"/proc/{nested}/ns/pid")},
        }))
finally:
    holder.stdin.close()
    holder.wait(30)
    holder.stdout.close()
"""


@needs_namespace
def test_nspid_of_a_zombie_in_a_child_namespace_under_a_parent_in_ours() -> None:
    """The NSpid shortcut asks the zombie's own namespace, not its parent's."""
    done = run_in_namespace(NESTED, HOLDER)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    links = doc["links"]
    assert links["holder"] == links["self"] != links["nested"]
    nested, plain = str(doc["nested"]), str(doc["plain"])
    assert doc["found"][nested] == [[doc["nested"], 1], "exited 5", True]
    assert doc["found"][plain] == [[doc["plain"]], "exited 4", True]


# PID reuse inside one clock tick: the zombie is reaped and its PID handed to
# a new process (ns_last_pid) within the 10 ms grain of the start time, so
# PID + start time still match. The stat inode does not, and the new process
# is no zombie. Retried until the two start times really coincide.
SAME_TICK = r"""
import json, os, time
from undertaker.census import take_census
from undertaker.proc import is_same_process, read_start_ticks, scan
from undertaker.testing import proc_state

def attempt():
    hold_r, hold_w = os.pipe()
    zombie = os.fork()
    if zombie == 0:
        os._exit(0)
    while proc_state(zombie) != "Z":
        pass
    snap = scan(owners=False)
    ticks = snap.processes[zombie].start_ticks
    os.waitpid(zombie, 0)
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(zombie - 1))
    squatter = os.fork()
    if squatter == 0:
        os.close(hold_w)
        os.read(hold_r, 1)
        os._exit(0)
    os.close(hold_r)
    try:
        same_tick = squatter == zombie and read_start_ticks(squatter) == ticks
        found = [z.process.pid for z in take_census(snap).zombies]
        fooled = is_same_process(zombie, ticks)
    finally:
        os.close(hold_w)
        os.waitpid(squatter, 0)
    return same_tick, found, fooled

for tries in range(1, 101):
    same_tick, found, fooled = attempt()
    if same_tick:
        break
print(json.dumps({"tries": tries, "same_tick": same_tick, "found": found, "fooled": fooled}))
"""


@needs_namespace
def test_a_pid_reused_within_the_same_tick_is_not_the_zombie() -> None:
    """The inode check sees a reuse that PID + start time cannot."""
    done = run_in_namespace(SAME_TICK, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["same_tick"], f"no same-tick reuse in {doc['tries']} tries"
    assert doc["fooled"]  # PID + start time alone would take the newcomer for the zombie
    assert doc["found"] == []


def test_scan_keeps_each_zombies_stat_inode_and_cpu() -> None:
    """The keys the scan keeps are the kernel's: the stat file's inode, the CPU of stat."""
    with ZombieParent([ZombieSpec(code=1)] * 3) as parent:
        snap = scan(owners=False)
        for pid in parent.zombies:
            key = snap.zombie_keys[pid]
            assert key.stat_inode == os.stat(f"/proc/{pid}/stat").st_ino
            with open(f"/proc/{pid}/stat", "rb") as stat:
                assert key.cpu == parse_stat(stat.read()).cpu
        assert parent.pid not in snap.zombie_keys  # live processes need none
        assert snap.monotonic is not None
        assert 0 <= time.monotonic() - snap.monotonic < 60


def test_identity_falls_back_to_the_start_time() -> None:
    """A changed inode (an evicted cache entry) or an old snapshot: start time and state decide."""
    with ZombieParent([ZombieSpec(code=2)] * 2) as parent:
        snap = scan(owners=False)
        snap.zombie_keys = {
            pid: key._replace(stat_inode=key.stat_inode + 1)
            for pid, key in snap.zombie_keys.items()
        }
        found = [z.process.pid for z in take_census(snap, lambda p: p.ppid == parent.pid).zombies]
        assert sorted(found) == sorted(parent.zombies)
        stale = scan(owners=False)
        assert stale.monotonic is not None
        stale.monotonic -= 3600  # an hour old: the inode is not trusted, start time decides
        census = take_census(stale, lambda p: p.ppid == parent.pid)
        assert sorted(z.process.pid for z in census.zombies) == sorted(parent.zombies)
        assert all(z.exited_at is not None for z in census.zombies)
    # Reaped since: every path agrees it is gone.
    assert take_census(snap, lambda p: p.ppid == parent.pid).zombies == []
    assert take_census(stale, lambda p: p.ppid == parent.pid).zombies == []
