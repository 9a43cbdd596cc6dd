"""The diagnosis layer's pure parts: masks, syscalls, cgroup names, reaping counters."""

from __future__ import annotations

import pytest

from undertaker.diagnose import (
    VERDICTS,
    Evidence,
    container_of,
    diagnose,
    mask_names,
    sigchld_disposition,
    syscall_name,
)
from undertaker.diagnose._container import service_of
from undertaker.diagnose._verdict import wait_target
from undertaker.proc import parse_status
from undertaker.proc._detail import Syscall, parse_syscall, waited_children

CID = "0123456789abcdef" * 4


def test_mask_names_include_realtime_signals() -> None:
    """Standard, glibc-reserved and real-time signals all get names."""
    mask = (1 << 16) | (1 << 31) | (1 << 33) | (1 << 36) | (1 << 63)
    assert mask_names(mask) == ["SIGCHLD", "SIG32", "SIGRTMIN", "SIGRTMIN+3", "SIGRTMAX"]
    assert mask_names(0) == []


@pytest.mark.parametrize(
    ("ign", "cgt", "expected"),
    [
        (0, 0, "default"),
        (1 << 16, 0, "ignored"),
        (0, 1 << 16, "caught"),
        (1 << 12, 1 << 1, "default"),
    ],
)
def test_sigchld_disposition(ign: int, cgt: int, expected: str) -> None:
    """Bit 16 of SigIgn / SigCgt decides; other signals do not."""
    assert expected == sigchld_disposition(ign, cgt)


def test_syscall_names_per_architecture() -> None:
    """The same call has different numbers on x86_64 and aarch64."""
    assert syscall_name(61, "x86_64") == "wait4"
    assert syscall_name(260, "aarch64") == "wait4"
    assert syscall_name(115, "aarch64") == "clock_nanosleep"
    assert syscall_name(61, "riscv64") == "syscall 61"


def test_parse_syscall_forms() -> None:
    """Blocked in a call, running, between calls, and garbage."""
    blocked = parse_syscall(b"230 0x1 0x1 0x7ffd 0x0 0x0 0x0 0x7ffc 0x7f12\n")
    assert blocked is not None
    assert blocked.number == 230
    assert blocked.args == (1, 1, 0x7FFD, 0, 0, 0)
    running = parse_syscall(b"running\n")
    assert running is not None
    assert running.running
    between = parse_syscall(b"-1 0x7ffc 0x7f12\n")
    assert between is not None
    assert between.number is None
    assert parse_syscall(b"") is None
    assert parse_syscall(b"x y") is None


@pytest.mark.parametrize(
    ("path", "runtime", "cid", "pod"),
    [
        (f"/system.slice/docker-{CID}.scope", "docker", CID, None),
        (f"/docker/{CID}", "docker", CID, None),
        (f"/system.slice/cri-containerd-{CID}.scope", "containerd", CID, None),
        (f"/machine.slice/libpod-{CID}.scope/container", "podman", CID, None),
        (
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_1111_2222"
                f"_333344445555.slice/crio-{CID}.scope"
            ),
            "cri-o",
            CID,
            "1b2c3d4e-0000-1111-2222-333344445555",
        ),
        (
            f"/kubepods/besteffort/pod1b2c3d4e-0000-1111-2222-333344445555/{CID}",
            "kubernetes",
            CID,
            "1b2c3d4e-0000-1111-2222-333344445555",
        ),
    ],
)
def test_container_of(path: str, runtime: str, cid: str, pod: str | None) -> None:
    """Each runtime's cgroup naming is recognised, with the pod UID when there is one."""
    found = container_of(["/", path])
    assert found is not None
    assert (runtime, cid, pod) == tuple(found)


def test_no_container() -> None:
    """A plain host cgroup names no container."""
    assert container_of(["/", "/user.slice/user-0.slice/session-1.scope"]) is None


def test_waited_children_counters() -> None:
    """cminflt + cmajflt and cutime + cstime, from a captured stat line."""
    line = (
        b"42 (a) b) S 1 42 42 0 -1 4194304 100 2539 0 7 1 2 3 4 20 0 1 0 5 0 0 "
        b"18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
    )
    assert waited_children(line) == (2546, 7)
    assert waited_children(b"42 (x) S 1") == (0, 0)


def _evidence(state: str, **changes: object) -> Evidence:
    """Evidence around a status captured from a real parent, with *state* and *changes*."""
    captured = (
        b"Name:\tserver\nState:\t" + state.encode() + b" (x)\nTgid:\t40\nPid:\t40\nPPid:\t1\n"
        b"TracerPid:\t0\nUid:\t0\t0\t0\t0\nThreads:\t1\nNSpid:\t40\nSigPnd:\t0000000000000000\n"
        b"ShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\n"
        b"SigCgt:\t0000000000000000\nSeccomp:\t0\n"
    )
    base = Evidence(
        pid=40, zombies=[], gone=False, status=parse_status(captured), cmdline=["./server"],
        start_ticks=1, live_threads=1, blocked_threads=0, tracer_comm=None,
        wchan="do_wait" if state == "D" else "hrtimer_nanosleep", syscall=None,
        syscall_name=None, cgroups=["/"], container=None, reaped_before=False, unreadable=[],
    )  # fmt: skip
    return base._replace(**changes)


def test_verdict_uninterruptible_parent() -> None:
    """State D: no ptrace remedy (it would not stop), the kernel stack is the first step."""
    found = diagnose(_evidence("D"))
    assert found.verdict == "parent-uninterruptible"
    assert "wchan do_wait" in found.reason
    hows = [f.how for f in found.fixes]
    assert hows[0] == "cat /proc/40/stack"
    assert not any("ptrace" in how for how in hows)


def test_verdict_parent_outside_view() -> None:
    """A zombie whose parent we cannot see (ppid 0) is not blamed on anyone."""
    found = diagnose(_evidence("S", status=None))
    assert found.verdict == "parent-outside-view"


def test_every_verdict_name_is_listed() -> None:
    """The stable names are unique and spelled in kebab case."""
    assert len(set(VERDICTS)) == len(VERDICTS)
    assert all(name == name.lower() and " " not in name for name in VERDICTS)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("wait4", (2**64 - 1, 0, 0, 0, 0, 0), None),  # wait4(-1): any child
        ("wait4", (77, 0, 0, 0, 0, 0), "one child, pid 77"),
        ("wait4", (2**64 - 9, 0, 0, 0, 0, 0), "the children in process group 9"),
        ("waitid", (1, 78, 0, 4, 0, 0), "one child, pid 78"),
        ("waitid", (3, 5, 0, 4, 0, 0), "one child through a pidfd"),
        ("waitid", (0, 0, 0, 4, 0, 0), None),  # P_ALL
        ("read", (0, 0, 0, 0, 0, 0), None),
    ],
)
def test_wait_target(name: str, args: tuple[int, ...], expected: str | None) -> None:
    """The arguments of /proc/PID/syscall say whom a blocked wait is limited to."""
    ev = _evidence("S", syscall=Syscall(0, running=False, args=args), syscall_name=name)
    assert expected == wait_target(ev)


def test_service_of() -> None:
    """A system service is named from any hierarchy's path; a user's unit and a name that is
    no unit name are not."""
    assert service_of(["/", "/system.slice/cron.service"]) == "cron.service"
    assert service_of(["/system.slice/a.service/sub/b.service"]) == "b.service"
    user = "/user.slice/user-1000.slice/user@1000.service/app.slice/a.service"
    assert service_of([user]) is None
    assert service_of(["/system.slice/x;rm -rf.service"]) is None
    assert service_of(["/system.slice/docker-0123.scope"]) is None
