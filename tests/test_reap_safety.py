"""The ptrace remedy under attack: interrupted, in a container, checked word by word.

Each test starts its own parent (tests/reap_parents.py or a small script) and
acts only on it; each checks the zombies went *and* the parent is unharmed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from helpers import cli, needs_namespace
from test_reap_ptrace import PARENT, _syscall, end, parent, reap_all, start
from undertaker.remedy import ParentRefused, plan_ptrace_reap, reap_via_ptrace
from undertaker.remedy._arch import for_machine
from undertaker.remedy._checks import is_kernel_thread
from undertaker.remedy._ptrace import Tracee
from undertaker.remedy._target import Target
from undertaker.remedy.signals import check_killable
from undertaker.testing import proc_state, sleep_until

# Reaps 1,000 zombies of a busy parent in one long stop (max_stop 1 s) and sends
# itself SIGINT (a terminal's ^C) as soon as the parent is traced: mid-stop.
# The tracer must end that stop (restore, detach) before it is let go, and
# report what it reaped; killed half-way it would leave the parent running on
# the injected frame.
_INTERRUPTED = r"""
import json, os, signal, subprocess, sys, threading, time
from undertaker.remedy import ReapInterrupted, reap_via_ptrace
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
reaped = None
try:
    reap_via_ptrace(pid, ready["zombies"], max_stop=1.0)
    how = "finished"
except ReapInterrupted as stopped:
    how, reaped = "interrupted", stopped.result.reaped
watcher.join()
time.sleep(0.2)  # a helper left behind would go on reaping: let it show
gone = [z for z in ready["zombies"] if not os.path.exists(f"/proc/{z}")]
after = tracer()
report = json.loads(proc.stdout.readline())
print(json.dumps({"how": how, "gone": gone, "reaped": reaped, "zombies": ready["zombies"],
                  "tracer": after, "report": report, "returncode": proc.wait(10)}))
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
    assert out["reaped"] == out["gone"]  # what the interrupted stop reaped is reported
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


# PID 1 of a container (a private PID namespace) with a zombie child, and
# another process in there with one too. Each later waits for its zombie and
# says what it got; both wait for a line on stdin first.
_CONTAINER = r"""
import json, os, sys
def wait_for(pid):
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return "ECHILD"
z1 = os.fork()
if z1 == 0:
    os._exit(3)
r, w = os.pipe()
mid = os.fork()
if mid == 0:
    os.close(w)
    z2 = os.fork()
    if z2 == 0:
        os._exit(4)
    os.read(r, 1)
    os._exit(0 if wait_for(z2) == "ECHILD" else 1)
os.close(r)
print("ready", flush=True)
sys.stdin.readline()
os.close(w)
print(json.dumps({"init_waited": wait_for(z1), "mid": wait_for(mid)}), flush=True)
"""


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as kids:
        return [int(k) for k in kids.read().split()]


@needs_namespace
def test_parents_inside_a_container_are_reaped_for_with_their_own_pids() -> None:
    """Seen from the host, a container's PID 1 and another of its processes reap their zombies.

    kill-parent refuses that PID 1; ptrace makes it reap. wait4 runs in the
    parent, so it must get the zombie's PID in the parent's namespace (2, 4
    in there), not ours.
    """
    proc = start(
        [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            sys.executable,
            "-c",
            _CONTAINER,
        ]
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        (init,) = _children(proc.pid)
        z1, mid = sorted(_children(init))  # forked in that order
        assert sleep_until(lambda: len(_children(mid)) == 1)  # mid forks after "ready"
        (z2,) = _children(mid)
        assert sleep_until(lambda: proc_state(z1) == "Z" and proc_state(z2) == "Z")
        refused = cli("reap", str(z1), "--method", "kill-parent", "--yes")
        assert refused.returncode == 8  # never end PID 1 of any namespace
        assert "PID 1 of its namespace" in refused.stderr
        for parent, zombie, code in ((init, z1, 3), (mid, z2, 4)):
            result = reap_via_ptrace(parent, [zombie])
            assert result.reaped == [zombie], result.outcomes
            assert str(result.outcomes[0].status) == f"exited {code}"
            assert proc_state(zombie) is None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        report = json.loads(proc.stdout.readline())
        assert report == {"init_waited": "ECHILD", "mid": 0}  # mid got ECHILD too
        assert proc.wait(10) == 0
    finally:
        end(proc)  # unshare --kill-child: its PID 1, and so the namespace, dies with it


def test_many_zombies_in_one_stop() -> None:
    """50 zombies and a generous max_stop: one attach reaps them all."""
    with parent("sleep", 50) as p:
        result = reap_via_ptrace(p.pid, p.zombies, max_stop=1.0)
        assert result.reaped == p.zombies
        assert len(result.stops) == 1
        report = p.result()
    assert report["waits"] == {str(z): "ECHILD" for z in p.zombies}
    assert report["other"] == 5 << 8


def test_parent_blocked_in_wait_for_another_child_gets_that_childs_status() -> None:
    """A parent in waitpid(live child) (a shell in a foreground job): its own wait4 restarts.

    The injected wait4 runs inside the parent's interrupted wait4; restored,
    that one resumes and returns the live child's status when it exits.
    """
    with parent("waitlive") as p:
        reap_all(p)
        report = p.result()
    assert report["result"] == 6 << 8
    assert 0.99 <= report["duration"] < 2.0
    assert report["waits"] == {str(z): "ECHILD" for z in p.zombies}
    assert report["other"] == 5 << 8


def _registers(pid: int) -> list[int]:
    """Every register word of *pid* (stopped: they cannot change), read by our own attach."""
    tracee = Tracee(pid, for_machine(os.uname().machine))
    tracee.attach()
    try:
        return list(tracee.saved)
    finally:
        tracee.detach()


def _code(pid: int) -> dict[str, bytes]:
    """The bytes of every executable mapping of *pid*, by address range."""
    with open(f"/proc/{pid}/maps") as maps:
        ranges = [line.split()[0] for line in maps if line.split()[1][2] == "x"]
    code = {}
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for span in ranges:
            start, stop = (int(x, 16) for x in span.split("-"))
            if start < 1 << 63:  # not [vsyscall], the kernel's, unreadable through mem
                code[span] = os.pread(mem.fileno(), stop - start, start)
    return code


def test_registers_come_back_word_for_word_and_no_code_is_written() -> None:
    """A stopped parent, inside clock_nanosleep: same registers after the reap, same code.

    Every word of NT_PRSTATUS (orig_rax and the -ERESTART value in rax
    included), and every byte of every executable mapping, before and after.
    """
    with parent("sleep") as p:
        os.kill(p.pid, signal.SIGSTOP)  # our own child, not reaped: the PID is safe
        assert sleep_until(lambda: proc_state(p.pid) == "T")
        before, code = _registers(p.pid), _code(p.pid)
        assert code  # the comparison below is not empty
        assert reap_via_ptrace(p.pid, p.zombies).reaped == p.zombies
        assert _registers(p.pid) == before
        assert _code(p.pid) == code
        os.kill(p.pid, signal.SIGCONT)
        report = p.result()
    assert report["result"] is None
    assert 0.99 <= report["duration"] < 10
    assert report["waits"] == {str(z): "ECHILD" for z in p.zombies}


# A parent that started `sh -c "exit 7"` with subprocess and, once told, waits for it.
_SUBPROCESS_PARENT = r"""
import subprocess, sys
child = subprocess.Popen(["sh", "-c", "exit 7"])
print(child.pid, flush=True)
sys.stdin.readline()
print(child.wait(), flush=True)
"""


def test_python_subprocess_reports_returncode_0_for_a_reaped_child() -> None:
    """What the CLI warns of: the lost status becomes returncode 0 in subprocess, no crash."""
    proc = start([sys.executable, "-c", _SUBPROCESS_PARENT])
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        zombie = int(proc.stdout.readline())
        assert sleep_until(lambda: proc_state(zombie) == "Z")
        done = cli("reap", str(zombie), "--method", "ptrace", "--yes")
        assert done.returncode == 0, done.stderr
        assert "exited 7" in done.stdout
        assert "returncode 0" in done.stdout
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "0\n"  # not 7: the status went with the reap
        assert proc.wait(10) == 0
    finally:
        end(proc)


def test_kill_parent_refuses_kernel_threads_and_ourselves() -> None:
    """check_killable, the gate of kill-parent: a kernel thread, undertaker itself."""
    kthreads = (int(p) for p in os.listdir("/proc") if p.isdigit() and _is_kthread(int(p)))
    kthread = next(kthreads, None)
    if kthread is None:
        pytest.skip("no kernel thread visible (a PID namespace without the host's)")
    for pid, why in ((kthread, "kernel thread"), (os.getpid(), "undertaker itself")):
        target = Target.open(pid)
        try:
            with pytest.raises(ParentRefused, match=why):
                check_killable(target)
        finally:
            target.close()


def _is_kthread(pid: int) -> bool:
    try:
        return is_kernel_thread(pid)
    except OSError:
        return False


# A parent of 1,000 zombies that, once told, replaces its program (execve):
# the new one spins in Python for a second, then waits for every child.
_EXEC_PARENT = r"""
import os, sys, time
for i in range(1000):
    if os.fork() == 0:
        os._exit(3)
print(os.getpid(), flush=True)
sys.stdin.readline()
time.sleep(0.1)  # into the reap
os.execv(sys.executable, [sys.executable, "-c", SPIN])
"""
_SPIN = r"""
import os, time
end = time.monotonic() + 1
while time.monotonic() < end:
    sum(range(100))
statuses = set()
while True:
    try:
        statuses.add(os.waitpid(-1, 0)[1])
    except ChildProcessError:
        break
print(sorted(statuses), flush=True)
"""


def test_parent_that_execs_mid_reap_is_not_sent_to_a_stale_address() -> None:
    """The site found in the old program is checked again in each stop: the new one lives.

    After execve every address moves (ASLR): a system call instruction found
    before it, injected after, would run whatever is there now, or fault.
    """
    code = _EXEC_PARENT.replace("SPIN", repr(_SPIN))
    proc = start([sys.executable, "-c", code])
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        pid = int(proc.stdout.readline())
        kids = _children(pid)
        assert sleep_until(lambda: all(proc_state(z) == "Z" for z in kids))
        plan = plan_ptrace_reap(pid, kids)
        try:
            proc.stdin.write("exec\n")
            proc.stdin.flush()
            # Stops of 0.3 ms with 1 ms between them: many land around the exec.
            result = plan.execute(max_stop=0.0003)
        finally:
            plan.close()
        assert len(result.stops) > 10
        assert proc.stdout.readline() in ("[]\n", f"[{3 << 8}]\n")  # the rest, reaped by it
        assert proc.wait(10) == 0
    finally:
        end(proc)


# A parent whose main thread has exited (a zombie leader) while another thread
# lives on; that thread later waits for the zombie child and reports.
_LEADER_PARENT = r"""
import ctypes, os, sys, threading
z = os.fork()
if z == 0:
    os._exit(8)
def live():
    sys.stdin.readline()
    try:
        os.waitpid(z, 0)
        print("waited", flush=True)
    except ChildProcessError:
        print("ECHILD", flush=True)
    os._exit(0)
threading.Thread(target=live).start()
print(os.getpid(), z, flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


def test_parent_whose_main_thread_exited_is_traced_through_a_live_thread() -> None:
    """A zombie-leader parent cannot stop; its live thread is attached and reaps for the group."""
    proc = start([sys.executable, "-c", _LEADER_PARENT])
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        pid, zombie = map(int, proc.stdout.readline().split())
        assert sleep_until(lambda: proc_state(pid) == "Z" and proc_state(zombie) == "Z")
        result = reap_via_ptrace(pid, [zombie])
        assert result.reaped == [zombie]
        assert str(result.outcomes[0].status) == "exited 8"
        assert proc_state(zombie) is None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "ECHILD\n"
        assert proc.wait(10) == 0
    finally:
        end(proc)


# A parent that enters seccomp's strict mode (read, write, _exit, sigreturn
# only: any other call, wait4 included, kills it) and blocks in read(0).
_STRICT_PARENT = r"""
import ctypes, os
z = os.fork()
if z == 0:
    os._exit(3)
libc = ctypes.CDLL(None)
buf = ctypes.create_string_buffer(1)
read, prctl, syscall = libc.read, libc.prctl, libc.syscall
print(os.getpid(), z, flush=True)
prctl(22, 1, 0, 0, 0)  # PR_SET_SECCOMP, SECCOMP_MODE_STRICT
read(0, buf, 1)
syscall(60, 0)  # exit: allowed in strict mode, where exit_group is not
"""


def test_a_parent_in_strict_seccomp_is_refused_not_killed() -> None:
    """wait4 would get a strict-mode parent SIGKILLed: refused, the parent lives on."""
    proc = start([sys.executable, "-c", _STRICT_PARENT])
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        pid, zombie = map(int, proc.stdout.readline().split())
        assert sleep_until(lambda: _seccomp(pid) == 1 and _syscall(pid) == "0")
        with pytest.raises(ParentRefused, match="seccomp"):
            reap_via_ptrace(pid, [zombie])
        assert proc_state(pid) == "S"
        assert proc_state(zombie) == "Z"
        proc.stdin.write("x")
        proc.stdin.close()
        assert proc.wait(10) == 0  # read returned, _exit(0): never killed
        # Its zombie was re-parented to us (the session's subreaper) when it
        # exited: ours now, not reaped, so the PID is safe to wait for.
        assert os.waitpid(zombie, 0) == (zombie, 3 << 8)
    finally:
        end(proc)


def _seccomp(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(x for x in status if x.startswith("Seccomp:")).split()[1])


# A real SIGINT sent to ourselves at the very moment the tracer is forked
# (in the parent's after-fork hook), before any line that handles ^C.
_INTERRUPTED_AT_FORK = r"""
import json, os, signal
from undertaker.remedy import ReapInterrupted, reap_via_ptrace
from undertaker.testing import ZombieParent, ZombieSpec

with ZombieParent([ZombieSpec(code=3)] * 20) as parent:
    sent = []
    def hit():
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
    os.register_at_fork(after_in_parent=hit)
    try:
        reap_via_ptrace(parent.pid, parent.zombies)
        how = "finished"
    except ReapInterrupted:
        how = "interrupted"
    with open(f"/proc/{parent.pid}/status") as status:
        tracer = int(next(l for l in status if l.startswith("TracerPid")).split()[1])
    kids = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            kids += [int(p) for p in f.read().split()]
    print(json.dumps({"how": how, "tracer": tracer,
                      "helpers_left": [k for k in kids if k != parent.pid]}))
"""


def test_a_ctrl_c_at_the_fork_of_the_tracer_is_handled_like_any_other() -> None:
    """Before: KeyboardInterrupt escaped before its handler; the tracer was left unwaited."""
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_AT_FORK],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {"how": "interrupted", "tracer": 0, "helpers_left": []}
