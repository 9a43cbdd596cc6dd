"""What the init says: one-line warnings and errors, JSON lines for reaped processes.

Everything goes straight to file descriptor 2 with ``os.write``: no buffer
to flush before ``os._exit``, and no interleaving with the child's output
beyond whole lines. JSON is formatted by hand because ``import json`` costs
about 6 ms (it pulls in ``re``).
"""

from __future__ import annotations

import os
import time

PREFIX = "undertaker run: "

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def json_string(text: str) -> str:
    """Quote *text* as a JSON string (enough for ``comm``: 15 bytes, any content)."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or "\ud800" <= char <= "\udfff":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _write(line: str) -> None:
    data = (line + "\n").encode("utf-8", "backslashreplace")
    try:
        while data:
            data = data[os.write(2, data) :]
    except OSError:  # stderr closed or a broken pipe: nobody to tell
        pass


class Stats:
    """Counters for the summary line."""

    __slots__ = ("drained", "orphans", "reaped")

    def __init__(self) -> None:
        """All zero."""
        self.reaped = 0
        self.orphans = 0
        self.drained = 0


class Reporter:
    """Warnings always; JSON lines with ``--log-reaped``; what the init does with ``-v``."""

    __slots__ = ("reaped_lines", "verbose")

    def __init__(self, reaped_lines: bool, verbose: bool = False) -> None:
        """*reaped_lines*: a JSON line per reaped process, and a summary; *verbose*: ``-v``."""
        self.reaped_lines = reaped_lines
        self.verbose = verbose

    def info(self, message: str) -> None:
        """``undertaker run: ...`` with ``-v``; callers in hot loops test ``verbose`` first."""
        if self.verbose:
            _write(f"{PREFIX}{message}")

    def warning(self, message: str) -> None:
        """``undertaker run: warning: ...``."""
        _write(f"{PREFIX}warning: {message}")

    def error(self, message: str) -> None:
        """``undertaker run: error: ...``."""
        _write(f"{PREFIX}error: {message}")

    def reaped(self, pid: int, status: int, ident: tuple[str, int] | None, main: bool) -> None:
        """One JSON line: pid, comm, status, exit code or signal, age in seconds."""
        if not self.reaped_lines:
            return
        exited = os.WIFEXITED(status)
        fields = [
            '"event": "reaped"',
            f'"pid": {pid}',
            f'"comm": {json_string(ident[0]) if ident else "null"}',
            f'"main": {"true" if main else "false"}',
            f'"exit_code": {os.WEXITSTATUS(status) if exited else "null"}',
            f'"signal": {os.WTERMSIG(status) if os.WIFSIGNALED(status) else "null"}',
        ]
        if ident is not None:
            age = time.clock_gettime(time.CLOCK_BOOTTIME) - ident[1] / _CLK_TCK
            fields.append(f'"age_s": {max(age, 0.0):.3f}')
        _write("{" + ", ".join(fields) + "}")

    def summary(self, stats: Stats, code: int) -> None:
        """The closing line: reaped N, orphans adopted M, drained K."""
        if self.reaped_lines:
            _write(
                f'{{"event": "exit", "exit_code": {code}, "reaped": {stats.reaped}, '
                f'"orphans_adopted": {stats.orphans}, "drained": {stats.drained}}}'
            )
