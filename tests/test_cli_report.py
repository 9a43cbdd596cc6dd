"""What ps and tree report, and how they exit, when the view is partial or unusual.

Hidden processes (hidepid), PID namespaces (their PID 1 as a parent, their
own pid_max), --min-age, collapsed siblings, and the small text promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from helpers import AS_NOBODY, cli, needs_namespace, run_hidden_as_nobody, run_in_namespace
from undertaker.testing import ZombieLeader, ZombieParent, ZombieSpec, sleep_until

# In a private mount namespace (still the initial PID namespace), mount a
# procfs with hidepid=invisible over /proc and run ps and tree as nobody.


@needs_namespace
def test_hidepid_view_is_incomplete_not_green() -> None:
    """Under hidepid=invisible, nobody sees no zombies: say so, exit 3, count PIDs by the kernel.

    Root's zombie is there but hidden: "no zombies" with exit 0 would let
    ``ps || alert`` stay silent.
    """
    with ZombieParent([ZombieSpec(code=4)]):
        out = run_hidden_as_nobody({"ps": ["ps"], "json": ["ps", "--json"], "tree": ["tree", "-z"]})
    rc, text, err = out["ps"]
    assert (rc, err) == (3, "")
    assert "no zombies seen: the view is incomplete" in text
    assert "\nno zombies\n" not in text
    assert "hidepid=invisible: other users' processes are hidden" in text
    assert "counts are lower bounds" in text
    assert "of pid_max, tasks counted by the kernel)" in text
    rc, body, _ = out["json"]
    doc = json.loads(body)
    assert rc == 3
    assert (doc["incomplete"], doc["hidepid"], doc["zombies"]) == (True, "invisible", [])
    limit = doc["pids"]["limit"]
    assert (limit["name"], limit["used_from"]) == ("pid_max", "loadavg")
    # The kernel's count covers the hidden processes: far more than nobody's own.
    assert limit["used"] == doc["pids"]["tasks"] > doc["pids"]["used"]
    rc, text, _ = out["tree"]
    assert rc == 3
    assert text.splitlines()[0] == "no zombies seen: the view is incomplete"
    assert "note: procfs is mounted hidepid=invisible" in text


@needs_namespace
def test_a_hidden_pid_is_not_said_to_be_gone() -> None:
    """Under hidepid, a PID nobody cannot see may exist: never "no such process".

    ps --pid, ps --ppid and status --zombie on root's hidden zombie and its
    parent: exit 2, saying it may be hidden, as why does.
    """
    with ZombieParent([ZombieSpec(code=4)]) as parent:
        zombie, ppid = str(parent.zombies[0]), str(parent.pid)
        out = run_hidden_as_nobody(
            {
                "pid": ["ps", "--pid", zombie],
                "json": ["ps", "--pid", zombie, "--json"],
                "ppid": ["ps", "--ppid", ppid],
                "some": ["ps", "--pid", f"1,{zombie}"],
                "status": ["status", "--zombie", zombie],
            }
        )
    hidden = "procfs is mounted hidepid=invisible: other users' processes are hidden"
    for name, pid in (("pid", zombie), ("json", zombie), ("ppid", ppid), ("status", zombie)):
        rc, text, err = out[name]
        assert (rc, text) == (2, ""), name
        assert err == f"undertaker: error: pid {pid} not seen: it may be hidden ({hidden})\n"
    rc, text, err = out["some"]  # PID 1 is root's too: nothing is seen
    assert rc == 2
    assert "no such process" not in err


@needs_namespace
def test_unreadable_entries_exit_3() -> None:
    """hidepid=noaccess lists entries nobody may read: counted, noted, exit 3 without zombies."""
    code = (
        "import subprocess, sys\n"
        "subprocess.run(['mount', '-o', 'remount,hidepid=1', '/proc'], check=True)\n"
        "out = subprocess.run([*sys.argv[1:], sys.executable, '-m', 'undertaker', 'ps'],"
        " capture_output=True, text=True)\n"
        "print(out.returncode); print(out.stdout)\n"
    )
    done = run_in_namespace(code, *AS_NOBODY)
    rc, _, text = done.stdout.partition("\n")
    assert rc == "3", done.stderr
    assert "could not be read (hidepid=noaccess)" in text
    assert "no zombies seen: the view is incomplete" in text


# A PID namespace whose PID 1 (this script) never reaps its child. /proc is
# still the host's, so NSpid shows both PIDs. It prints them, then waits.
NS_INIT = r"""
import os, sys, time
kid = os.fork()
if kid == 0:
    os._exit(3)
with open("/proc/self/status") as f:
    nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
print(nspid[0], flush=True)
sys.stdin.read()
"""


@needs_namespace
def test_zombie_of_a_namespace_init_gets_the_right_advice() -> None:
    """A zombie whose parent is PID 1 of a PID namespace: marked, and no "init adopts it"."""
    init = subprocess.Popen(
        ["unshare", "--pid", "--fork", sys.executable, "-c", NS_INIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert init.stdout is not None
        host_pid = init.stdout.readline().strip()
        assert sleep_until(
            lambda: any(
                _read(f"/proc/{kid}/stat").rpartition(")")[2].split()[0] == "Z"
                for kid in _read(f"/proc/{host_pid}/task/{host_pid}/children").split()
            )
        )
        text = cli("ps", "--ppid", host_pid)
        rc, doc = _json("ps", "--ppid", host_pid)
    finally:
        assert init.stdin is not None
        assert init.stdout is not None
        init.stdin.close()
        init.stdout.close()
        init.wait(30)
    assert (text.returncode, rc) == (1, 1)
    (parent,) = doc["parents"]
    assert (parent["namespace_init"], parent["nspid"]) == (True, [int(host_pid), 1])
    row = next(line for line in text.stdout.splitlines() if line.lstrip().startswith(host_pid))
    assert "[PID 1 of its namespace] " in row
    assert "exit so that init adopts" not in text.stdout
    assert f"PID 1 of its namespace ({host_pid}) is not reaping" in text.stdout
    assert "undertaker run -- CMD, or docker run --init" in text.stdout


@needs_namespace
def test_pid_max_inside_a_namespace_is_not_the_whole_story() -> None:
    """Inside a PID namespace pid_max reads the namespace's own 4194304: name the tighter limit."""
    code = (
        "import subprocess, sys\n"
        "for args in (['ps'], ['ps', '--json']):\n"
        "    print(subprocess.run([sys.executable, '-m', 'undertaker', *args],"
        " capture_output=True, text=True).stdout)\n"
    )
    done = run_in_namespace(code)
    text, _, body = done.stdout.partition("\n\n")
    doc = json.loads(body)
    pids = doc["pids"]
    threads_max = int(_read("/proc/sys/kernel/threads-max"))
    assert (pids["child_namespace"], pids["threads_max"]) == (True, threads_max)
    assert pids["max"] == 4194304  # the namespace's own: the host's is not visible
    limit = pids["limit"]
    headroom = {"pid_max": pids["max"] - pids["used"], "threads-max": threads_max - pids["tasks"]}
    assert limit["name"] == min(headroom, key=headroom.__getitem__)
    assert limit["max"] == (threads_max if limit["name"] == "threads-max" else 4194304)
    assert "its own pid_max is capped by the host's, which cannot be read from here" in text
    assert f"/{limit['max']} in use" in text.splitlines()[0]


@needs_namespace
def test_views_without_a_pid_count_carry_no_pid_max_note() -> None:
    """tree and why print no PID count, so no note on the namespace's pid_max either."""
    code = (
        "import subprocess, sys\n"
        "for command in ('tree', 'why', 'ps'):\n"
        "    done = subprocess.run([sys.executable, '-m', 'undertaker', command],"
        " capture_output=True, text=True)\n"
        "    print(command, done.returncode, 'pid_max' in done.stdout)\n"
    )
    done = run_in_namespace(code)
    assert done.stdout.splitlines() == ["tree 0 False", "why 0 False", "ps 0 True"]


def test_min_age_counts_only_old_zombies() -> None:
    """--min-age: a fresh zombie does not set exit 1, an old enough one does."""
    with ZombieParent([ZombieSpec(code=2)]) as parent:
        young = cli("ps", "--ppid", str(parent.pid), "--min-age", "1h")
        rc, doc = _json("ps", "--ppid", str(parent.pid), "--min-age", "5m")
        time.sleep(0.3)
        old = cli("ps", "--ppid", str(parent.pid), "--min-age", "0.2")
    assert young.returncode == 0
    assert "note: 1 zombie dead for less than 1h00m left out (--min-age)" in young.stdout
    assert "\nno zombies" in young.stdout
    assert (rc, doc["zombies"], doc["younger_zombies"], doc["min_age"]) == (0, [], 1, 300.0)
    assert old.returncode == 1
    assert "1 zombie under 1 parent" in old.stdout


@needs_namespace
def test_tree_min_age() -> None:
    """tree --min-age sets exit 1 only for zombies at least that old (alone in a namespace)."""
    code = (
        "import subprocess, sys, time\n"
        "from undertaker.testing import ZombieParent, ZombieSpec\n"
        "with ZombieParent([ZombieSpec(code=2)]):\n"
        "    for age in ('1h', '0.2s'):\n"
        "        time.sleep(0.3)\n"
        "        done = subprocess.run([sys.executable, '-m', 'undertaker', 'tree',"
        " '--min-age', age], capture_output=True, text=True)\n"
        "        print(done.returncode, done.stdout.splitlines()[-1])\n"
    )
    done = run_in_namespace(code)
    young, old = done.stdout.splitlines()
    assert young == "0 note: 1 zombie dead for less than 1h00m not counted (--min-age)"
    assert old.startswith("1 ")
    assert "not counted" not in old


@pytest.mark.parametrize("value", ["5x", "-1", "", "1e3", "m", "\u0661s", "5 m"])
def test_min_age_rejects_bad_durations(value: str) -> None:
    """A bad duration is one line and exit 2, for ps and tree alike."""
    for command in ("ps", "tree"):
        done = cli(command, "--min-age", value)
        assert done.returncode == 2
        assert f"undertaker {command}: error: argument --min-age: not a duration" in done.stderr
        assert len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1.5", 1.5), ("2d", 172800.0)],
)
def test_min_age_units(value: str, seconds: float) -> None:
    """30s, 5m, 1h, 2d and plain seconds are what --min-age takes."""
    rc, doc = _json("ps", "--pid", "1", "--min-age", value)
    assert (rc, doc["min_age"]) == (0, seconds)


def test_identical_siblings_share_a_row() -> None:
    """200 zombies of one parent, alike: one 200*[worker] row; --json and tree --all list all."""
    with ZombieParent([ZombieSpec(code=0, name="worker")] * 200, name="pool") as parent:
        lo, hi = min(parent.zombies), max(parent.zombies)
        text = cli("ps", "--ppid", str(parent.pid))
        rc, doc = _json("ps", "--ppid", str(parent.pid))
        tree = cli("tree", "-z")
        full = cli("tree", "-z", "--all")
    assert (text.returncode, rc) == (1, 1)
    rows = [line for line in text.stdout.splitlines() if "worker" in line]
    assert len(rows) == 1
    # lo-hi when the PIDs run without a gap (another fork may take one between)
    span = f"{lo}-{hi}" if hi - lo == 199 else f"{lo},...,{hi}"
    assert rows[0].split()[:2] == [span, str(parent.pid)]
    assert rows[0].endswith("exited 0  200*[worker]")
    assert len(doc["zombies"]) == 200
    lines = tree.stdout.splitlines()
    at = lines.index(next(line for line in lines if f"{parent.pid} pool [200 zombies]" in line))
    assert lines[at + 1].endswith(f"200*[worker] <defunct> exited 0 (pids {span})")
    assert sum(" worker <defunct>" in line for line in full.stdout.splitlines()) >= 200


def test_a_gap_in_alike_siblings_pids_is_not_shown_as_a_range() -> None:
    """worker, other, worker: the workers' row must not claim the PID between them."""
    specs = [ZombieSpec(code=0, name="worker"), ZombieSpec(code=0, name="other")]
    with ZombieParent([*specs, ZombieSpec(code=0, name="worker")], name="pool") as parent:
        workers = sorted(parent.zombies[::2])
        text = cli("ps", "--ppid", str(parent.pid))
        tree = cli("tree", "-z")
    (row,) = [line for line in text.stdout.splitlines() if "2*[worker]" in line]
    assert row.split()[0] == f"{workers[0]},...,{workers[1]}"
    assert f"2*[worker] <defunct> exited 0 (pids {workers[0]},...,{workers[1]})" in tree.stdout


def test_zombie_leader_text_agrees_with_json() -> None:
    """A zombie leader: live threads the same in text, JSON and tree; singular words for one."""
    with ZombieLeader() as leader:
        text = cli("ps", "--pid", str(leader.pid))
        _, doc = _json("ps", "--pid", str(leader.pid))
        tree = cli("tree", "-z")
    (entry,) = doc["zombie_leaders"]
    assert (entry["threads"], entry["live_threads"]) == (2, 1)
    assert "1 zombie leader: alive" in text.stdout
    assert "zombie leader(s)" not in text.stdout
    assert f"pid {leader.pid} is a zombie leader: alive, 1 live thread\n" in text.stdout
    header, row = text.stdout.splitlines()[-3:-1]
    assert "LIVE THREADS" in header
    assert row.split()[:3] == [str(leader.pid), str(os.getpid()), "1"]
    assert f"{leader.pid} python <zombie leader, 1 live thread>" in tree.stdout


def test_no_ages_leaves_oldest_unknown_too() -> None:
    """--no-ages: OLDEST is ? like DEAD FOR, not the start time passed off as an age."""
    with ZombieParent([ZombieSpec(code=1)]) as parent:
        done = cli("ps", "--ppid", str(parent.pid), "--no-ages")
    lines = done.stdout.splitlines()
    parents = lines[lines.index(next(x for x in lines if x.lstrip().startswith("PPID"))) + 1]
    assert parents.split()[:3] == [str(parent.pid), "1", "?"]


def test_parent_column_fits_columns() -> None:
    """The PARENT column is cut to what $COLUMNS leaves, not a fixed 72 characters."""
    with ZombieParent([ZombieSpec(code=1)]) as parent:
        env = dict(os.environ, COLUMNS="70")
        done = cli("ps", "--ppid", str(parent.pid), env=env)
    lines = done.stdout.splitlines()
    at = lines.index(next(x for x in lines if x.lstrip().startswith("PPID")))
    assert len(lines[at + 1]) <= 70
    assert lines[at + 1].endswith("...")


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _json(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = cli(*args, "--json")
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)
