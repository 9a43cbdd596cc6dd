r"""The terminal keys Ctrl-C, Ctrl-Z, Ctrl-\ and Ctrl-D, through a real pseudo-terminal (004).

A session leader takes the pty's slave as its controlling terminal, puts two
``sleep`` processes in a foreground process group and one in a background
group, and waits for them with WUNTRACED; the lab types the key on the master
side, as a terminal emulator would, and reads back what each process got.
"""

from __future__ import annotations

import fcntl
import os
import resource
import shutil
import signal
import tempfile
import termios
import time
from typing import Any, NamedTuple

from undertaker.lab._core import (
    CONFIRMED,
    DEPENDS,
    REFUTED,
    Gate,
    Lab,
    Pipe,
    Verdict,
    decide,
    experiment,
)
from undertaker.lab._programs import comm, cores_stay_local, count_cores, exec_sleep
from undertaker.wait import WaitStatus


def _member(slave: int, group: int, setup: _Setup, reader: Pipe | None) -> int:
    """A process of the session: join *group*, then sleep (or read the terminal)."""
    os.setpgid(0, group)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if reader is None:
        exec_sleep(setup.core_dir, setup.inherit_limit)
    deadline = time.monotonic() + 2.0  # read once the terminal is ours (else SIGTTIN stops us)
    while os.tcgetpgrp(0) != os.getpgrp() and time.monotonic() < deadline:
        time.sleep(0.001)
    reader.send({"reading": True})
    data = os.read(0, 100)
    reader.send({"read": data.decode(errors="replace"), "bytes": len(data)})
    return 0


def _setpgid(pid: int, group: int) -> None:
    """Set a child's group from the parent too, as shells do: whoever runs first wins."""
    try:
        os.setpgid(pid, group)
    except PermissionError:
        pass  # EACCES: the child already ran execve, after setting its group itself


def _outcome(pid: int, deadline: float) -> str:
    """What became of member *pid*: its wait status, or ``running`` at *deadline*."""
    while time.monotonic() < deadline:
        got, status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
        if got:
            return str(WaitStatus(status))
        time.sleep(0.002)
    return "running"


class _Setup(NamedTuple):
    """How the terminal and its first foreground process are set up."""

    isig: bool  # the line discipline turns keys into signals (the default)
    core_dir: str | None  # where members may dump core; None: RLIMIT_CORE 0
    reader_first: bool  # the first foreground process reads the terminal
    inherit_limit: bool = False  # keep the RLIMIT_CORE the lab got (else raise it)


def _session(report: Pipe, gate: Gate, slave: int, setup: _Setup) -> int:
    """The session leader: foreground group of two, background group of one."""
    isig, reader_first = setup.isig, setup.reader_first
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    if not isig:
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~(termios.ISIG | termios.ICANON)  # raw mode, as an editor sets it
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    reader = Pipe() if reader_first else None
    first = os.fork()
    if first == 0:
        os._exit(_member(slave, 0, setup, reader))
    _setpgid(first, first)
    second = os.fork()
    if second == 0:
        os._exit(_member(slave, first, setup, None))
    _setpgid(second, first)
    background = os.fork()
    if background == 0:
        os._exit(_member(slave, 0, _Setup(isig, None, reader_first=False), None))
    _setpgid(background, background)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # we are not in the group we hand over
    os.tcsetpgrp(slave, first)
    deadline = time.monotonic() + 2.0
    expect = [second, background] if reader_first else [first, second, background]
    while any(comm(p) != "sleep" for p in expect) and time.monotonic() < deadline:
        time.sleep(0.002)
    if reader is not None:
        reader.recv(2.0)  # it is about to read
    report.send({"foreground": [first, second], "background": background, "group": first})
    gate.wait()  # the lab types the key now
    # The line discipline handles typed keys in a workqueue: allow for a busy machine.
    deadline = time.monotonic() + 0.6
    outcome = {str(p): _outcome(p, deadline) for p in (first, second, background)}
    if reader is not None:
        outcome["read"] = reader.recv(0.5)
    report.send(outcome)
    gate.wait()  # the lab has taken its ps lines
    for pid in (first, second, background):
        try:
            os.kill(pid, signal.SIGKILL)  # our children, unreaped: safe
        except ProcessLookupError:
            continue
    for pid in (first, second, background):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            continue
    return 0


def _type_key(
    lab: Lab,
    key: bytes,
    *,
    isig: bool = True,
    core_dir: str | None = None,
    reader_first: bool = False,
    inherit_limit: bool = False,
) -> dict[str, Any]:
    """Start a session on a new pty, type *key* on the master side, return what happened."""
    master, slave = os.openpty()
    report, gate = Pipe(), Gate()
    setup = _Setup(isig, core_dir, reader_first, inherit_limit)
    try:
        leader = lab.fork(_session, report, gate, slave, setup, name="session")
        ready = report.recv(3.0)
        os.write(master, key)
        gate.release()
        outcome = report.recv(3.0)
        fg, bg = ready["foreground"], ready["background"]
        mode = "" if isig else " (ISIG off)"
        lab.ps(f"after typing {_key_name(key)}{mode}", [leader, *fg, bg])
        gate.release()
        lab.collect([leader])
    finally:
        os.close(master)
        os.close(slave)
    return {
        "foreground": [outcome[str(p)] for p in fg],
        "background": outcome[str(bg)],
        "read": outcome.get("read"),
    }


def _key_name(key: bytes) -> str:
    return "Ctrl-" + chr(key[0] + 64)  # 0x03 -> C, 0x1c -> backslash


def _report(lab: Lab, key: bytes, seen: dict[str, Any]) -> None:
    lab.say(
        f"{_key_name(key)}: the foreground group's two processes: "
        f"{', '.join(seen['foreground'])}; the background one: {seen['background']}"
    )


@experiment(
    "tty-ctrl-c",
    "004",
    "Ctrl-C sends SIGINT to every process in the terminal's foreground process group",
)
def tty_ctrl_c(lab: Lab) -> Verdict:
    """Type 0x03 with ISIG on (the default), then with ISIG off (raw mode)."""
    seen = _type_key(lab, b"\x03")
    _report(lab, b"\x03", seen)
    raw = _type_key(lab, b"\x03", isig=False, reader_first=True)
    typed = (raw["read"] or {}).get("read")
    lab.say(
        "with ISIG off (raw mode, as editors set it) nothing was signalled "
        f"({', '.join(raw['foreground'])}) and the reader got the byte as input: {typed!r}"
    )
    lab.record(default=seen, raw=raw)
    hit = seen["foreground"] == ["killed by SIGINT"] * 2 and seen["background"] == "running"
    return decide(
        hit,
        Verdict(
            CONFIRMED,
            "both foreground processes, and only they, were killed by SIGINT; "
            "the terminal's line discipline sends it while ISIG is on (raw mode passes "
            "the byte as input instead)",
        ),
        Verdict(REFUTED, f"the foreground group got {seen['foreground']}"),
    )


@experiment(
    "tty-ctrl-z", "004", "Ctrl-Z sends SIGTSTP to the foreground process group, suspending it"
)
def tty_ctrl_z(lab: Lab) -> Verdict:
    """Type 0x1a."""
    seen = _type_key(lab, b"\x1a")
    _report(lab, b"\x1a", seen)
    states = [r["state"] for r in lab.tables[-1]["rows"][1:3]]
    lab.say(f"ps shows the foreground processes in state {', '.join(map(str, states))}")
    lab.record(**seen, states=states)
    return decide(
        seen["foreground"] == ["stopped by SIGTSTP"] * 2 and seen["background"] == "running",
        Verdict(
            CONFIRMED,
            "both foreground processes were stopped by SIGTSTP (state T), the "
            "background one kept running",
        ),
        Verdict(REFUTED, f"the foreground group got {seen['foreground']}"),
    )


@experiment(
    "tty-ctrl-backslash",
    "004",
    "Ctrl-\\ sends SIGQUIT to the foreground process group: it ends and dumps core",
)
def tty_ctrl_backslash(lab: Lab) -> Verdict:
    """Type 0x1c twice: members with the RLIMIT_CORE the lab got, then with it raised."""
    soft = resource.getrlimit(resource.RLIMIT_CORE)[0]
    local = cores_stay_local()
    runs: dict[str, Any] = {}
    for inherit in (True, False):
        core_dir = tempfile.mkdtemp(prefix="undertaker-lab-core-")
        try:
            seen = _type_key(
                lab, b"\x1c", core_dir=core_dir if local else None, inherit_limit=inherit
            )
            seen["core_files"] = count_cores(core_dir)
        finally:
            shutil.rmtree(core_dir, ignore_errors=True)
        runs["inherited" if inherit else "raised"] = seen
    limit = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    for key, how in (("inherited", f"soft RLIMIT_CORE {limit}"), ("raised", "RLIMIT_CORE raised")):
        seen = runs[key]
        lab.say(
            f"{how}: the foreground group's two processes: {', '.join(seen['foreground'])}; "
            f"the background one: {seen['background']}; core files: {seen['core_files']}"
        )
    lab.record(**runs, inherited_soft_limit=limit, cores_stay_local=local)
    quit_ = all(
        s.startswith("killed by SIGQUIT") and seen["background"] == "running"
        for seen in runs.values()
        for s in seen["foreground"]
    )
    if not quit_:
        return Verdict(REFUTED, f"the foreground group got {runs['inherited']['foreground']}")
    if runs["inherited"]["core_files"] == 2:
        return Verdict(
            CONFIRMED,
            "both foreground processes were killed by SIGQUIT and each dumped core "
            f"with the limits the lab was started with (soft RLIMIT_CORE {limit})",
        )
    return Verdict(
        DEPENDS,
        "SIGQUIT ended both foreground processes, but a core file is written only when "
        f"RLIMIT_CORE and core_pattern allow it: with the soft limit {limit} it got, "
        f"{runs['inherited']['core_files']} were; raised, {runs['raised']['core_files']}",
    )


@experiment("tty-ctrl-d", "004", "Ctrl-D sends no signal: it ends the input (EOF)")
def tty_ctrl_d(lab: Lab) -> Verdict:
    """Type 0x04 at the start of a line while one foreground process reads."""
    seen = _type_key(lab, b"\x04", reader_first=True)
    got = seen["read"] or {}
    lab.say(
        f"the reading process's read() returned {got.get('bytes')} bytes (end of file) "
        f"and it exited: {seen['foreground'][0]}; the other two: "
        f"{seen['foreground'][1]}, {seen['background']}"
    )
    lab.record(**seen)
    return decide(
        got.get("bytes") == 0 and seen["foreground"] == ["exited 0", "running"],
        Verdict(
            CONFIRMED,
            "no process was signalled; the reader's read() returned 0 bytes, "
            "end of file, and it exited normally",
        ),
        Verdict(REFUTED, f"Ctrl-D gave {seen}"),
    )


EXPERIMENTS = (tty_ctrl_c, tty_ctrl_z, tty_ctrl_backslash, tty_ctrl_d)
