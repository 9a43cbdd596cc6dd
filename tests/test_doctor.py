"""``undertaker doctor``: findings about the machine, checked in real PID namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import AS_NOBODY, UNDERTAKER, cli, needs_namespace, run_in_namespace
from undertaker.diagnose._doctor import ACTION, NOTE, OK, judge_limit, judge_ptrace, judge_self
from undertaker.wait import _kernel_at_least
from why_scenarios import TWO_ZOMBIES, python_parent

# PID 1 of a fresh namespace waits for one child first (argv[2] "waited") or
# not, makes zombies (argv[1]), then runs doctor (argv[3:]), reading its output
# to the end before it waits for it.
_AS_INIT = r"""
import json, os, subprocess, sys, time
if sys.argv[2] == "waited":
    subprocess.run(["true"], check=True)
for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        os._exit(3)
time.sleep(0.2)
run = subprocess.Popen([sys.executable, "-m", "undertaker", "doctor", *sys.argv[3:]],
                       text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
out, err = run.stdout.read(), run.stderr.read()
print(json.dumps({"rc": run.wait(), "out": out, "err": err}))
"""


def _doctor_as_init(zombies: int, waited: str = "waited") -> dict:  # type: ignore[type-arg]
    """Doctor's JSON and text, each run by PID 1 of a new namespace."""
    runs = []
    for extra in (["--json"], []):
        done = run_in_namespace(_AS_INIT, str(zombies), waited, *extra)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
        assert runs[-1]["err"] == ""
    doc, text = runs
    return {
        "rc": doc["rc"],
        "doc": json.loads(doc["out"]),
        "text": text["out"],
        "text_rc": text["rc"],
    }


@needs_namespace
def test_init_holding_zombies_needs_action() -> None:
    """PID 1 of the namespace holds zombies: the init finding needs action, exit 1."""
    result = _doctor_as_init(2)
    assert result["rc"] == result["text_rc"] == 1
    [init] = [f for f in result["doc"]["findings"] if f["check"] == "init"]
    assert init["level"] == ACTION
    assert "holding 2 zombie(s)" in init["fact"]
    assert "docker run --init" in init["advice"]
    assert "[ACTION] PID 1 is python" in result["text"]


@needs_namespace
def test_init_that_reaps_is_fine() -> None:
    """PID 1 with no zombies: the init finding is ok; nothing else needs action here."""
    result = _doctor_as_init(0)
    levels = {f["check"]: f["level"] for f in result["doc"]["findings"]}
    assert levels["init"] == OK
    assert result["rc"] == 0, result["doc"]
    assert (
        "[ok] PID 1 is python (SIGCHLD default), holding 0 zombie(s); it has waited"
        in (result["text"])
    )


@needs_namespace
def test_init_that_never_waited_may_be_no_init() -> None:
    """PID 1 without zombies that has never waited for a child (the kernel's counters are
    0): not vouched for, a note (exit 0) that says what to do."""
    result = _doctor_as_init(0, "never")
    [init] = [f for f in result["doc"]["findings"] if f["check"] == "init"]
    assert init["level"] == NOTE
    assert init["fact"].endswith("holding 0 zombie(s); it has never waited for a child")
    assert "undertaker" in init["advice"]
    assert f"[note] {init['fact']}" in result["text"]
    assert result["rc"] == result["text_rc"] == 0, result["doc"]


def test_doctor_runs_on_the_host() -> None:
    """On the host, doctor prints every check and exits 0 or 1, never 2."""
    done = cli("doctor", "--json")
    assert done.returncode in (0, 1), done.stderr
    checks = [f["check"] for f in json.loads(done.stdout)["findings"]]
    for name in ("self", "init", "pid_max", "threads-max", "ptrace", "pidfd"):
        assert name in checks


def test_judges() -> None:
    """The pure judgements: pressure at 80%, ptrace scope 3, subreaper."""
    assert judge_limit("pid_max", 900, 1000).level == ACTION
    assert judge_limit("pid_max", 100, 1000).level == OK
    assert judge_limit("pid_max", None, 1000).level == NOTE
    assert judge_ptrace(3, capable=True).level == NOTE
    assert judge_ptrace(None, capable=True).level == OK
    assert judge_ptrace(2, capable=False).advice.startswith("run `undertaker reap")
    assert judge_self(1, subreaper=False).level == OK
    assert judge_self(42, subreaper=True).level == OK
    assert judge_self(42, subreaper=False).level == NOTE


def test_pids_cgroup_at_its_limit_needs_action() -> None:
    """Run inside a real pids cgroup with pids.max 1: the cgroup finding needs action."""
    base = Path("/sys/fs/cgroup/pids")
    if os.geteuid() != 0 or not (base / "cgroup.procs").exists():
        pytest.skip("needs root and the cgroup v1 pids controller")
    group = base / f"undertaker-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "pids.max").write_text("1\n")
        script = f'echo $$ > {group}/cgroup.procs && exec "$@"'
        done = subprocess.run(
            ["sh", "-c", script, "sh", *UNDERTAKER, "doctor", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        group.rmdir()
    assert done.returncode == 1, done.stderr
    [found] = [f for f in json.loads(done.stdout)["findings"] if f["check"].startswith("pids")]
    assert found["check"] == f"pids cgroup {group}"
    assert found["level"] == ACTION
    assert "1 of 1 in use" in found["fact"]


# An allow-all seccomp filter: the kernel then shows "Seccomp: 2" for this
# process and everything it starts, and nothing is refused.
_ALLOW_ALL = r"""
import ctypes, os, sys
class Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]
allow = (Insn * 1)(Insn(0x06, 0, 0, 0x7FFF0000))  # BPF_RET|BPF_K SECCOMP_RET_ALLOW
prog = Prog(1, allow)
prctl = ctypes.CDLL(None, use_errno=True).prctl
prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
if prctl(38, 1, None, 0, 0) or prctl(22, 2, ctypes.addressof(prog), 0, 0):  # NO_NEW_PRIVS, SECCOMP
    sys.exit("seccomp: errno %d" % ctypes.get_errno())
"""


# Two zombies (see why_scenarios.python_parent).
def test_zombie_parent_under_seccomp_is_noted() -> None:
    """A real parent under a seccomp filter holds zombies: doctor names it (an injected wait4
    would pass its filter), and why's ptrace fix says so."""
    with python_parent(_ALLOW_ALL + TWO_ZOMBIES) as (pid, _):
        doc = cli("doctor", "--json")
        text = cli("doctor")
        why = cli("why", "--json", str(pid))
    assert doc.returncode in (0, 1), doc.stderr
    findings = json.loads(doc.stdout)["findings"]
    [found] = [f for f in findings if f["check"] == "seccomp-zombie-parents"]
    assert found["level"] == NOTE
    assert f"{pid} (" in found["fact"]
    assert "wait4" in found["advice"]
    assert f"[note] {found['fact']}" in text.stdout
    [report] = json.loads(why.stdout)["parents"]
    assert report["seccomp"] == 2
    [ptrace] = [f for f in report["fixes"] if "--method ptrace" in f["how"]]
    assert "seccomp" in ptrace["summary"]


def _doctor(*prefix: str) -> dict[str, dict[str, str]]:
    done = subprocess.run(
        [*prefix, *UNDERTAKER, "doctor", "--json"],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return {f["check"]: f for f in json.loads(done.stdout)["findings"]}


def test_doctor_as_a_subreaper_as_nobody_and_under_seccomp() -> None:
    """Each finding about undertaker itself, from a real process in that situation."""
    subreaper = "import ctypes, os, sys\nctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n"
    run_exec = "os.execv(sys.argv[1], sys.argv[1:])"
    found = _doctor(sys.executable, "-c", subreaper + run_exec)
    assert (found["self"]["level"], found["self"]["fact"]) == (
        OK,
        "we are a child subreaper: our orphans come to us",
    )
    found = _doctor(*AS_NOBODY)
    assert found["ptrace"]["level"] == NOTE
    assert "no CAP_SYS_PTRACE" in found["ptrace"]["fact"]
    found = _doctor(sys.executable, "-c", _ALLOW_ALL + run_exec)
    assert found["seccomp-undertaker"]["level"] == NOTE
    assert found["seccomp-undertaker"]["fact"] == "undertaker runs under seccomp (filter)"


@needs_namespace
def test_a_procfs_of_another_pid_namespace_is_no_crash() -> None:
    """In a container's mount namespace only (nsenter -m), /proc shows its PID namespace,
    where we are not, so /proc/self does not exist: why and doctor still answer."""
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    with python_parent(TWO_ZOMBIES, prefix) as (pid, _):
        enter = ["nsenter", "-t", str(pid), "-m", *UNDERTAKER]
        why, text, doctor = (
            subprocess.run([*enter, *args], capture_output=True, text=True, timeout=60, check=False)
            for args in (["why", "--json"], ["why"], ["doctor", "--json"])
        )
    assert (why.returncode, why.stderr) == (1, ""), why.stderr
    [parent] = json.loads(why.stdout)["parents"]
    assert (parent["pid"], parent["verdict"]) == (1, "namespace-init-not-reaping")
    # The fixes name that namespace's PIDs: said, since a shell out here reads them as ours.
    assert "note: this /proc shows a PID namespace we are not in" in text.stdout
    assert doctor.returncode == 1, doctor.stderr  # that PID 1 holds zombies
    findings = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}
    assert findings["init"]["level"] == ACTION
    # Our own process is not in that /proc: not read there, never another process.
    assert findings["seccomp-undertaker"]["fact"] == "seccomp of undertaker: not readable"
    assert any("a PID namespace we are not in" in f["fact"] for f in findings.values())


def test_doctor_error_is_one_line_and_exit_2() -> None:
    """An unreadable procfs or a bad argument: one line on standard error, exit 2."""
    for args in (["--proc", "/nonexistent"], ["--proc", "/tmp", "--json"], ["extra"]):
        done = cli("doctor", *args)
        assert (done.returncode, done.stdout) == (2, ""), done
        assert done.stderr.count("\n") == 1, done.stderr


# PID 1 of a fresh namespace lowers the namespace's own pid_max to 310 (the
# least allowed), holds 260 children, and runs doctor.
_PRESSED = r"""
import json, os, subprocess, sys
with open("/proc/sys/kernel/pid_max", "w") as limit:
    limit.write("310")
gate_r, gate_w = os.pipe()
for _ in range(260):
    if os.fork() == 0:
        os.close(gate_w)
        os.read(gate_r, 1)
        os._exit(0)
os.close(gate_r)
done = subprocess.run([sys.executable, "-m", "undertaker", "doctor", "--json"],
                      capture_output=True, text=True)
os.close(gate_w)
print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr}))
"""


# Before Linux 6.14 pid_max is one for the whole machine: never lowered from a test.
@pytest.mark.skipif(not _kernel_at_least(6, 14), reason="pid_max per PID namespace: Linux 6.14+")
@needs_namespace
def test_pid_max_pressure_needs_action() -> None:
    """Real PID pressure: 262 PIDs in use of a namespace's pid_max of 310 needs action."""
    done = run_in_namespace(_PRESSED)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["rc"], result["err"]) == (1, ""), result
    [found] = [f for f in json.loads(result["out"])["findings"] if f["check"] == "pid_max"]
    assert found["level"] == ACTION
    assert found["fact"].startswith("pid_max: 26")
    assert " of 310 in use" in found["fact"]
    assert "EAGAIN" in found["advice"]
