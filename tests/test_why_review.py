"""``undertaker why`` and ``doctor`` where a first reading misleads: hidden views, merged
signals, namespace inits, parents out of sight, unreadable wchan, hostile names."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import (
    AS_NOBODY,
    UNDERTAKER,
    cli,
    needs_namespace,
    run_hidden_as_nobody,
    run_in_namespace,
)
from undertaker.testing import ZombieParent, ZombieSpec, proc_state, sleep_until
from why_scenarios import children, named_cgroup, python_parent


def why_json(*args: str) -> tuple[int, dict[str, Any], str]:
    """``why --json ARGS`` and ``why ARGS``: the status, the document and the text."""
    doc = cli("why", "--json", *args)
    text = cli("why", *args)
    assert doc.returncode == text.returncode, text.stderr
    return doc.returncode, json.loads(doc.stdout), text.stdout


# In a private mount namespace (still the initial PID namespace), mount a
# procfs with hidepid=invisible over /proc and run why and doctor as nobody.


@needs_namespace
def test_hidepid_why_and_doctor_say_the_view_is_incomplete() -> None:
    """Root's zombies hidden from nobody: no all-clear, exit 3 as ps; a hidden PID may be hidden."""
    with ZombieParent([ZombieSpec(code=4)]) as parent:
        out = run_hidden_as_nobody(
            {
                "why": ["why"],
                "json": ["why", "--json"],
                "pid": ["why", str(parent.pid)],
                "doctor": ["doctor", "--json"],
            }
        )
    rc, text, err = out["why"]
    assert (rc, err) == (3, "")
    assert "no zombies seen: the view is incomplete" in text
    assert "no zombies\n" not in text.replace("no zombies seen", "")
    assert "hidepid=invisible" in text
    rc, body, _ = out["json"]
    doc = json.loads(body)
    assert rc == 3
    assert (doc["incomplete"], doc["hidepid"], doc["parents"]) == (True, "invisible", [])
    rc, text, err = out["pid"]
    assert rc == 2
    assert "may be hidden" in err
    assert "no such process" not in err
    rc, body, _ = out["doctor"]
    findings = {f["check"]: f for f in json.loads(body)["findings"]}
    assert "lower bound" in findings["view"]["fact"] or "hidden" in findings["view"]["fact"]
    # Root's zombie parents are hidden: no all-clear about their seccomp filters.
    assert findings["seccomp-zombie-parents"]["level"] == "note"
    # The PID count comes from the kernel's task count, not nobody's own few processes.
    used = int(findings["pid_max"]["fact"].split(": ")[1].split(" of ")[0])
    assert used > 5


# A wakeup-only SIGCHLD handler (as event loops install), one earlier targeted
# wait (subprocess.run), then three Popen children it forgets.
_WAKEUP_HANDLER = """
import signal, subprocess
signal.signal(signal.SIGCHLD, lambda *_: None)
subprocess.run(["true"], check=True)
kids = [subprocess.Popen(["true"]) for _ in range(3)]
"""


def test_handler_that_reaped_once_is_an_inference_not_a_fact() -> None:
    """ "Reaped before" may be one targeted wait: the reason hedges, code first, nudge a try."""
    with python_parent(_WAKEUP_HANDLER) as (pid, kids):
        status, doc, text = why_json(str(pid))
        # A SIGCHLD does nothing to this parent: the nudge is only a try.
        nudged = cli("reap", "--method", "nudge", "--parent", str(pid))
        assert "the parent reaped 0 of 3" in nudged.stdout  # reap says the try failed
        assert all(proc_state(k) == "Z" for k in kids)
    assert status == 1
    parent = doc["parents"][0]
    assert parent["verdict"] == "handler-loses-signals"
    assert "may reap only one child per signal" in parent["reason"]
    assert "only the children it waits for by PID" in parent["reason"]
    fixes = parent["fixes"]
    assert fixes[0]["kind"] == "code"
    assert any("Popen" in f["how"] and ".wait()" in f["how"] for f in fixes if f["kind"] == "code")
    nudge = [f for f in fixes if "--method nudge" in f["how"]]
    assert len(nudge) == 1
    assert nudge[0]["summary"].startswith("try")
    assert "reports whether" in nudge[0]["summary"]
    assert all(f["kind"] == "operational" for f in fixes[fixes.index(nudge[0]) :])
    assert "may reap only one child per signal" in text


_POPEN_AS_INIT = """
import subprocess
kids = [subprocess.Popen(["true"]) for _ in range(3)]
"""


@needs_namespace
def test_namespace_init_holding_its_own_children_gets_wait_fixes_first() -> None:
    """PID 1 whose zombies are its own Popen children: waiting is the fix; an init or a
    Reaper only helps with adopted orphans, and is offered on that condition."""
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    with python_parent(_POPEN_AS_INIT, prefix) as (pid, kids):
        status, doc, text = why_json(str(pid))
    assert status == 1
    parent = doc["parents"][0]
    assert parent["verdict"] == "namespace-init-not-reaping"
    assert len(parent["zombies"]) == len(kids) == 3
    fixes = parent["fixes"]
    assert "Popen" in fixes[0]["how"]
    assert "wait" in fixes[0]["how"]
    for fix in fixes:
        if "Reaper" in fix["how"] or "undertaker run" in fix["how"] or "--init" in fix["how"]:
            assert "if these are adopted orphans" in fix["summary"], fix
    assert any("Reaper" in f["how"] for f in fixes)
    assert "if these are adopted orphans" in text


# Enter the PID namespace of argv[1] (its children land there), fork two
# children that exit at once, and hold them as zombies until EOF.
_HOLDER = r"""
import ctypes, os, sys
fd = os.open("/proc/%s/ns/pid" % sys.argv[1], os.O_RDONLY)
if ctypes.CDLL(None, use_errno=True).setns(fd, 0x20000000) != 0:  # CLONE_NEWPID
    sys.exit("setns failed")
kids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    kids.append(pid)
print(" ".join(map(str, kids)), flush=True)
while os.read(0, 4096):
    pass
for pid in kids:
    os.waitpid(pid, 0)
"""


@needs_namespace
def test_parent_in_an_enclosing_namespace_is_diagnosed_from_there() -> None:
    """Zombies whose parent is outside our PID namespace (ppid 0 here): we are already
    inside, so the fix is to run the diagnosis from the host, not `docker exec`."""
    init = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
         "import os\nwhile os.read(0, 4096):\n    pass"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert init.stdin is not None
    holder = None
    try:
        assert sleep_until(lambda: len(children(init.pid)) == 1, 10)
        inner = children(init.pid)[0]
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(inner)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        kids = [int(p) for p in holder.stdout.readline().split()]
        assert sleep_until(lambda: all(proc_state(k) == "Z" for k in kids), 10)
        enter = ("nsenter", "-t", str(inner), "-p", "-m", *UNDERTAKER, "why")
        text = subprocess.run([*enter], capture_output=True, text=True, timeout=60, check=False)
        done = subprocess.run(
            [*enter, "--json"], capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        for proc in (holder, init):
            if proc is not None:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(30)
        if holder is not None and holder.stdout is not None:
            holder.stdout.close()
    assert done.returncode == 1, done.stderr
    parent = json.loads(done.stdout)["parents"][0]
    assert parent["verdict"] == "parent-outside-view"
    assert len(parent["zombies"]) == 2
    assert "enclosing" in parent["reason"]
    hows = " ".join(f["how"] + f["summary"] for f in parent["fixes"])
    assert "docker exec" not in hows
    assert "on the host" in hows
    assert "docker exec" not in text.stdout


@needs_namespace
def test_kubernetes_container_restart_is_a_real_command() -> None:
    """PID 1 of a pod's container: kubectl delete pod or crictl stop, never `crictl restart`
    (cri-tools has none); with no container named, `how` is still a command."""
    cid, uid = secrets.token_hex(32), "0123abcd_4567_89ab_cdef_0123456789ab"
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    names = ("kubepods.slice", f"kubepods-besteffort-pod{uid}.slice", f"cri-containerd-{cid}.scope")
    with named_cgroup(*names) as scope, python_parent(_POPEN_AS_INIT, prefix) as (pid, _):
        _, plain, _ = why_json(str(pid))
        (scope / "cgroup.procs").write_text(f"{pid}\n")
        status, doc, _ = why_json(str(pid))
    assert status == 1
    parent = doc["parents"][0]
    assert parent["container"]["runtime"] == "containerd"
    hows = [f["how"] for f in parent["fixes"]]
    assert all(hows), parent["fixes"]
    assert not any("crictl restart" in how for how in hows)
    assert f"crictl stop {cid[:12]}" in hows
    assert any(how.startswith("kubectl") and "delete pod" in how for how in hows)
    # Outside any known container: the restart is still an exact command.
    assert all(f["how"] for f in plain["parents"][0]["fixes"])


def test_unreadable_wchan_is_not_running() -> None:
    """As nobody, root's sleeping parent shows wchan "0", as a running one would: the kernel
    hides it. Said as unreadable (null), never as "" (running)."""
    with python_parent(_POPEN_AS_INIT) as (pid, _):
        done = subprocess.run(
            [*AS_NOBODY, *UNDERTAKER, "why", "--json", str(pid)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    parent = json.loads(done.stdout)["parents"][0]
    assert parent["state"] == "S"
    assert parent["wchan"] is None
    assert any(what.startswith("wchan") for what in parent["unreadable"])


# A subreaper that never reaps its adopted orphans: its child (the middle
# parent) holds three zombies and exits on a line from stdin; the grandparent
# waits for it alone. At EOF it reaps everything.
_SUBREAPER = r"""
import ctypes, json, os, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
gate_r, gate_w = os.pipe()
middle = os.fork()
if middle == 0:
    os.close(gate_w)
    kids = []
    for _ in range(3):
        kid = os.fork()
        if kid == 0:
            os._exit(3)
        kids.append(kid)
    print(json.dumps([os.getpid(), kids]), flush=True)
    os.read(gate_r, 1)
    os._exit(0)
os.close(gate_r)
sys.stdin.readline()
os.close(gate_w)
os.waitpid(middle, 0)
print("gone", flush=True)
while os.read(0, 4096):
    pass
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
"""


def _sleeping_in_watch(pid: int) -> bool:
    from undertaker.diagnose import syscall_name  # noqa: PLC0415
    from undertaker.proc._detail import read_syscall  # noqa: PLC0415

    call = read_syscall(pid)
    number = call.number if call is not None else None
    return number is not None and syscall_name(number) in ("clock_nanosleep", "nanosleep")


def test_watch_reports_a_parent_that_exited_meanwhile() -> None:
    """The parent exits during --watch, its zombies adopted by a subreaper that does not
    reap: "parent exited during the watch", not "5 -> 0 (not growing)"."""
    grand = subprocess.Popen(
        [sys.executable, "-c", _SUBREAPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert grand.stdin is not None
    assert grand.stdout is not None
    watchers: list[subprocess.Popen[str]] = []
    try:
        middle, kids = json.loads(grand.stdout.readline())
        assert sleep_until(lambda: all(proc_state(k) == "Z" for k in kids), 10)
        command = [*UNDERTAKER, "why", "--watch", "2", str(middle)]
        watchers += [
            subprocess.Popen([*command, *extra], stdout=subprocess.PIPE, text=True)
            for extra in (("--json",), ())
        ]
        assert sleep_until(lambda: all(_sleeping_in_watch(w.pid) for w in watchers), 30)
        grand.stdin.write("exit\n")
        grand.stdin.flush()
        assert grand.stdout.readline() == "gone\n"
        assert all(proc_state(k) == "Z" for k in kids)  # adopted, still unreaped
        (doc, _), (text, _) = (w.communicate(timeout=60) for w in watchers)
    finally:
        for watcher in watchers:
            watcher.kill()
            watcher.wait()
        grand.stdin.close()
        grand.wait(30)
        grand.stdout.close()
    growth = json.loads(doc)["parents"][0]["growth"]
    assert growth["gone"] is True
    assert (growth["before"], growth["remaining"]) == (3, 3)
    assert "parent exited during the watch" in text
    assert "not growing" not in text


# A parent named with terminal escapes (prctl PR_SET_NAME), with one live child;
# both block on stdin; at EOF the child exits and the parent waits for it.
_HOSTILE = r"""
import ctypes, os
ctypes.CDLL(None).prctl(15, b"\x1b]0;pwn\x07\x1b[2J", 0, 0, 0)
kid = os.fork()
if kid == 0:
    while os.read(0, 4096):
        pass
    os._exit(0)
print(kid, flush=True)
while os.read(0, 4096):
    pass
os.waitpid(kid, 0)
"""


def test_quiet_parent_line_is_escaped_and_said_once() -> None:
    """A quiet parent's comm may hold escape sequences: printed escaped, as ps does; the same
    PID asked three times is answered once."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _HOSTILE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert parent.stdin is not None
    assert parent.stdout is not None
    try:
        int(parent.stdout.readline())
        pid = str(parent.pid)
        assert sleep_until(lambda: "pwn" in Path(f"/proc/{pid}/comm").read_text(), 10)
        done = subprocess.run(
            [*UNDERTAKER, "why", pid, pid, pid], capture_output=True, timeout=60, check=False
        )
    finally:
        parent.stdin.close()
        parent.wait(30)
        parent.stdout.close()
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stdout
    assert b"\x07" not in done.stdout
    assert done.stdout.count(b"holds no zombies") == 1


_POPEN_SAME_PROGRAM = f"""
import subprocess
kids = [subprocess.Popen([{sys.executable!r}, "-c", "pass"]) for _ in range(3)]
"""


def test_same_name_children_are_probably_forked_not_surely() -> None:
    """Popen children running the parent's own interpreter share its name though they did
    exec: "probably forked without exec", and the Popen fix is offered next to join."""
    with python_parent(_POPEN_SAME_PROGRAM) as (pid, _):
        status, doc, text = why_json(str(pid))
    assert status == 1
    parent = doc["parents"][0]
    assert parent["forked_without_exec"] == 3
    assert "no exec" not in text
    assert "probably forked without exec" in text
    code = " ".join(f["how"] for f in parent["fixes"] if f["kind"] == "code")
    assert "join()" in code
    assert "Popen" in code
    assert ".wait()" in code


_THREADED = """
import subprocess, threading
threading.Thread(target=threading.Event().wait, daemon=True).start()
kids = [subprocess.Popen(["true"]) for _ in range(2)]
"""


def test_thread_id_is_explained_as_its_process() -> None:
    """`why TID` of a thread: said to be a thread of process TGID, which is diagnosed."""
    with python_parent(_THREADED) as (pid, _):
        tid = next(t for t in sorted(map(int, os.listdir(f"/proc/{pid}/task"))) if t != pid)
        status, doc, text = why_json(str(tid))
    assert status == 1
    assert [p["pid"] for p in doc["parents"]] == [pid]
    assert f"pid {tid} is a thread of process {pid}" in text
    assert doc["quiet"] == [f"pid {tid} is a thread of process {pid}"]


@needs_namespace
def test_doctor_in_a_pid_namespace_says_the_host_limit_is_hidden() -> None:
    """Inside a PID namespace its own pid_max is not the whole story: noted as ps notes it."""
    code = (
        "import subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'undertaker', 'doctor', '--json'],"
        " capture_output=True, text=True)\n"
        "print(done.stdout)"
    )
    done = run_in_namespace(code)
    assert done.returncode == 0, done.stderr
    findings = json.loads(done.stdout)["findings"]
    view = [f["fact"] for f in findings if f["check"] == "view"]
    assert any("inside a PID namespace" in fact and "host's" in fact for fact in view), findings


# multiprocessing.Process children (fork start method) that exit and are never
# joined: what a worker pool left to itself leaks.
_UNJOINED = """
import multiprocessing
ctx = multiprocessing.get_context("fork")
gate = ctx.Event()
kids = [ctx.Process(target=gate.wait) for _ in range(3)]
for kid in kids:
    kid.start()
gate.set()
"""


def test_unjoined_multiprocessing_children_get_the_join_fix() -> None:
    """Python parent, multiprocessing children never joined: the runtime is named and the
    first fix joins them, in text and JSON."""
    with python_parent(_UNJOINED) as (pid, kids):
        status, doc, text = why_json(str(pid))
    assert status == 1
    [parent] = doc["parents"]
    assert parent["verdict"] == "default-never-waits"
    assert sorted(z["pid"] for z in parent["zombies"]) == sorted(kids)
    assert (parent["runtime"], parent["forked_without_exec"]) == ("python", 3)
    first = parent["fixes"][0]
    assert "multiprocessing" in first["summary"]
    assert first["how"].startswith("p.join()")
    assert "runtime        python (from its command line)" in text
    assert "verdict        default-never-waits:" in text
    assert "p.join()" in text
