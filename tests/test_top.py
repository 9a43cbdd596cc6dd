"""``undertaker top`` under a real pseudo-terminal (issue 11, item 3).

Each test runs ``top`` through tests/top_wrapper.py as the session leader of a
fresh pty (``pty.fork``): keys are written to the master side, exactly as a
user types them, and the wrapper reports whether the terminal's modes came
back after ``top`` ended.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from helpers import UNDERTAKER, needs_events
from undertaker.testing import ZombieParent, ZombieSpec, sleep_until

WRAPPER = Path(__file__).with_name("top_wrapper.py")
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """The master side of a pty running ``top`` through the wrapper."""

    def __init__(self, *args: str) -> None:
        """Start ``undertaker top ARGS`` on a new pty, 100x40."""
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update(COLUMNS="100", LINES="40")
            os.execv(sys.executable, [sys.executable, str(WRAPPER), "top", *args])  # noqa: S606
        self.pid, self.fd, self.seen = pid, fd, ""

    def read_until(self, text: str, timeout: float = 20.0) -> str:
        """Read output until *text* appears (escape sequences removed); return it all."""
        deadline = time.monotonic() + timeout
        while text not in _ESCAPES.sub("", self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} in {self.seen[-2000:]!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    self.seen += os.read(self.fd, 65536).decode("utf-8", "replace")
                except OSError:  # EIO: the other side closed
                    break
        return _ESCAPES.sub("", self.seen)

    def poll(self, wait: float = 0.2) -> str:
        """Read what arrives within *wait* seconds; return the last frame drawn."""
        if select.select([self.fd], [], [], wait)[0]:
            try:
                self.seen += os.read(self.fd, 65536).decode("utf-8", "replace")
            except OSError:
                pass  # EIO: the other side closed
        return _ESCAPES.sub("", self.seen.rsplit("\x1b[H", 1)[-1])

    def result(self) -> dict[str, object]:
        """The wrapper's report once top has ended, after reaping the wrapper."""
        text = self.read_until("RESULT ")
        self.read_until("}")
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        line = text[text.index("RESULT ") :].splitlines()[0]
        report: dict[str, object] = json.loads(line.removeprefix("RESULT "))
        return report

    def top_pid(self) -> int:
        """The PID of the ``top`` process (the wrapper's child)."""
        text = self.read_until("STARTED ")
        return int(text[text.index("STARTED ") :].split()[1])

    def close(self) -> None:
        """Close the master side (the pty hangs up if anything still runs)."""
        os.close(self.fd)


def _lflag(fd: int) -> int:
    return int(termios.tcgetattr(fd)[3])


@pytest.mark.smoke
def test_q_quits_and_restores_the_terminal() -> None:
    """q ends top with status 0; while it ran the pty was in cbreak mode, then restored."""
    term = Terminal("--interval", "0.2")
    try:
        term.read_until("q: quit")
        assert not _lflag(term.fd) & (termios.ICANON | termios.ECHO)  # cbreak, no echo
        screen = term.read_until("q: quit")
        assert "Tasks:" in screen
        assert "Zombies:" in screen
        assert "PIDs:" in screen
        os.write(term.fd, b"q")
        assert term.result() == {"status": 0, "restored": True}
        assert "\x1b[?1049h" in term.seen  # the alternate screen, entered and left
        assert "\x1b[?1049l" in term.seen
    finally:
        term.close()


def test_ctrl_c_quits_and_restores_the_terminal() -> None:
    """Ctrl-C typed on the terminal (SIGINT) ends top cleanly, modes restored."""
    term = Terminal("--interval", "0.2")
    try:
        term.read_until("q: quit")
        os.write(term.fd, b"\x03")
        assert term.result() == {"status": 0, "restored": True}
    finally:
        term.close()


def test_sigterm_quits_and_restores_the_terminal() -> None:
    """SIGTERM ends top through the same clean-up as q."""
    term = Terminal("--interval", "0.2")
    try:
        pid = term.top_pid()
        term.read_until("q: quit")
        os.kill(pid, signal.SIGTERM)  # our grandchild, still running: the wrapper waits for it
        assert term.result() == {"status": 0, "restored": True}
    finally:
        term.close()


@needs_events
def test_a_zombie_dying_while_top_runs_has_an_exact_age_and_shows_growth() -> None:
    """top follows events: a zombie made after its start is counted as growth, age without ~."""
    term = Terminal("--interval", "0.2")
    # A parent of its own, not this test process: orphans other tests left to
    # the session's subreaper may be zombies of ours, and change our row.
    holder = ZombieParent([ZombieSpec(code=5)])
    try:
        term.read_until("q: quit")
        holder.start()
        pattern = re.compile(rf"^\s*{holder.pid}\s+1\s+\+1\s+(\S+)\s+exited 5", re.MULTILINE)
        assert sleep_until(lambda: bool(pattern.search(term.poll())), 20)
        oldest = pattern.findall(term.poll(0))[-1]
        assert not oldest.startswith("~")
        assert "source: kernel events" in term.seen
        os.write(term.fd, b"q")
        assert term.result() == {"status": 0, "restored": True}
    finally:
        holder.close()
        term.close()


def test_batch_frames_without_a_terminal() -> None:
    """Without a terminal, --iterations prints that many frames; without it, a clear error."""
    done = subprocess.run(
        [*UNDERTAKER, "top", "--iterations", "2", "--interval", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Tasks:") == 2
    refused = subprocess.run(
        [*UNDERTAKER, "top"], capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "undertaker: error: top needs a terminal; for batch output give --iterations N"
    )


def test_ps_and_run_never_load_top_or_the_event_table() -> None:
    """ps answers without termios, tty, the socket module or the event table."""
    code = (
        "import contextlib, io, sys\n"
        "from undertaker.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['ps', '--json'])\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    assert "undertaker.cli.ps" in loaded
    heavy = {
        "termios",
        "tty",
        "curses",
        "socket",
        "undertaker.cli.top",
        "undertaker.proc._table",
        "undertaker.proc._connector",
    }
    assert set() == heavy & loaded
