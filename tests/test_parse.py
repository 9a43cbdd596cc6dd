"""Parsers fed with captured real /proc files and hostile ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from undertaker.proc import StatParseError, StatusParseError, parse_stat, parse_status
from undertaker.wait import exit_code_visible

FIXTURES = Path(__file__).parent / "fixtures" / "proc"


def _read(pid: str, name: str) -> bytes:
    return (FIXTURES / pid / name).read_bytes()


@pytest.mark.smoke
def test_captured_zombie_stat() -> None:
    """A captured zombie: state Z, its parent, one thread, exit code 7 << 8."""
    fields = parse_stat(_read("10347", "stat"))
    assert fields.state == "Z"
    assert fields.ppid == 10346
    assert fields.threads == 1
    assert fields.exit_code == 7 << 8
    assert fields.comm == "zparent"
    assert fields.start_ticks == 68611


def test_captured_hostile_name_killed_by_signal() -> None:
    """The name 'a) Z 1 (b' does not shift fields; the status is SIGSEGV (11)."""
    fields = parse_stat(_read("10348", "stat"))
    assert fields.comm == "a) Z 1 (b"
    assert (fields.state, fields.ppid, fields.exit_code) == ("Z", 10346, 11)


def test_captured_zombie_leader_has_live_thread() -> None:
    """A leader that called pthread_exit shows Z with 2 threads in stat and status."""
    assert parse_stat(_read("10349", "stat")).threads == 2
    status = parse_status(_read("10349", "status"))
    assert (status.state, status.threads) == ("Z", 2)


def test_captured_kernel_thread() -> None:
    """kthreadd: parent 0, no exit code, process group 0."""
    fields = parse_stat(_read("2", "stat"))
    assert (fields.comm, fields.ppid, fields.pgid, fields.exit_code) == ("kthreadd", 0, 0, 0)


def test_captured_status_fields() -> None:
    """status of a live parent: identity, uids, NSpid and Python's default masks."""
    status = parse_status(_read("10346", "status"))
    assert status.name == "zparent"
    assert status.tgid == 10346
    assert status.ppid == 10345
    assert status.nspid == (10346,)
    assert status.uids == (0, 0, 0, 0)
    assert status.tracer_pid == 0
    assert status.sig_ign & (1 << 12)  # SIGPIPE ignored by CPython
    assert not status.sig_cgt & (1 << 16)  # no SIGCHLD handler


@pytest.mark.parametrize(
    ("data", "comm", "state", "ppid"),
    [
        (b"5 (a) Z 1 (b) S 7 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0", "a) Z 1 (b", "S", 7),
        (b"5 (x\n) R 0\n) R 8 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0", "x\n) R 0\n", "R", 8),
        (b"5 () Z 9 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0", "", "Z", 9),
        (b"5 (()) S 3 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0", "()", "S", 3),
        (b"5 (\xff\xfe) S 3 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0", "\\xff\\xfe", "S", 3),
    ],
)
def test_hostile_stat_lines(data: bytes, comm: str, state: str, ppid: int) -> None:
    """Parentheses, newlines, empty and non-UTF-8 names parse exactly."""
    fields = parse_stat(data)
    assert (fields.comm, fields.state, fields.ppid) == (comm, state, ppid)
    assert fields.exit_code is None  # an old-kernel line without field 52


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"20 (trunc) S 1 20 20",
        b"21 noparens S 1 21 21 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0",
        b"23 (bad) S abc 23 23 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0",
        b"5 )x( S 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0",
        b"\x00" * 64,
    ],
)
def test_malformed_stat_is_rejected(data: bytes) -> None:
    """Anything that is not a whole stat line raises StatParseError, nothing else."""
    with pytest.raises(StatParseError):
        parse_stat(data)


def test_status_name_escapes() -> None:
    """The kernel writes a newline in a name as \\n; we give back the newline."""
    data = _read("10346", "status").replace(b"Name:\tzparent", b"Name:\tnew\\nline")
    assert parse_status(data).name == "new\nline"


@pytest.mark.parametrize(
    "data",
    [b"", b"Name:\tx\n", b"Name:\tx\nState:\tS\nTgid:\tnope\n"],
)
def test_malformed_status_is_rejected(data: bytes) -> None:
    """A status file missing required lines raises StatusParseError."""
    with pytest.raises(StatusParseError):
        parse_status(data)


def test_status_without_nspid_falls_back_to_tgid() -> None:
    """Kernels before 4.1 have no NSpid line: the PID is its own chain."""
    lines = _read("10346", "status").split(b"\n")
    data = b"\n".join(line for line in lines if not line.startswith(b"NSpid"))
    assert parse_status(data).nspid == (10346,)


def test_read_nspid_matches_full_parse() -> None:
    """The NSpid fast path agrees with parse_status on every captured process."""
    from undertaker.proc import read_nspid  # noqa: PLC0415

    for pid in ("2", "10346", "10347", "10348", "10349"):
        assert read_nspid(int(pid), str(FIXTURES)) == parse_status(_read(pid, "status")).nspid


def _with_fields(data: bytes, **fields: bytes) -> bytes:
    """The stat line with tail fields replaced: keys are ``f<man page number>``."""
    head, _, tail = data.rpartition(b") ")
    parts = tail.split(b" ")
    for key, value in fields.items():
        parts[int(key[1:]) - 3] = value
    return head + b") " + b" ".join(parts)


@pytest.mark.skipif(
    tuple(int(n) for n in os.uname().release.split("-")[0].split(".")[:2]) < (5, 16),
    reason="wchan answers for a dead task since Linux 5.16",
)
@pytest.mark.parametrize(
    ("comm", "code", "wchan", "visible"),
    [
        (b"zparent", b"1792", b"1", True),  # as captured by root
        (b"zparent", b"0", b"1", True),  # a real "exited 0", read by a permitted reader
        (b"zparent", b"0", b"0", False),  # what a reader the kernel refuses gets
        (b"zparent", b"1792", b"0", True),  # a hidden code is never written non-zero
        (b"a) Z 1 (b 0 1", b"0", b"0", False),  # a name cannot fake the fields
    ],
)
def test_exit_code_visible_reads_the_kernels_answer(
    comm: bytes, code: bytes, wchan: bytes, visible: bool
) -> None:
    """A kept exit code of 0 counts only when wchan (field 35) says we may read it."""
    data = _with_fields(_read("10347", "stat").rstrip(b"\n"), f35=wchan, f52=code)
    data = data.replace(b"(zparent)", b"(" + comm + b")")
    assert exit_code_visible(data, 10347, str(FIXTURES)) is visible
