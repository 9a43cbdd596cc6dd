"""Terminal colours and small text helpers shared by the formatters."""

from __future__ import annotations

import os
import sys
from typing import TextIO

_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 9: "\\t", 13: "\\r", 127: "\\x7f"}


def printable(text: str) -> str:
    """Escape control characters so a hostile name cannot break the layout."""
    return text.translate(_CONTROL)


def use_color(choice: str, stream: TextIO = sys.stdout) -> bool:
    """Colour on a terminal only, unless forced; ``NO_COLOR`` turns it off."""
    if choice == "always":
        return True
    if choice == "never" or "NO_COLOR" in os.environ:
        return False
    return stream.isatty()


class Style:
    """ANSI styles that turn into plain text when colour is off."""

    def __init__(self, enabled: bool) -> None:
        """Enable or disable escapes for every method."""
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def zombie(self, text: str) -> str:
        """Red: a dead process waiting for its parent."""
        return self._wrap("1;31", text)

    def leader(self, text: str) -> str:
        """Magenta: a zombie leader, alive."""
        return self._wrap("35", text)

    def blame(self, text: str) -> str:
        """Yellow: a parent or ancestor on a zombie's path."""
        return self._wrap("33", text)

    def dim(self, text: str) -> str:
        """Dim: secondary details."""
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        """Bold: headers."""
        return self._wrap("1", text)

    def reverse(self, text: str) -> str:
        """Reverse video: the one row to look at first (``top``'s worst parent)."""
        return self._wrap("7", text)


def duration(seconds: float) -> str:
    """Format an age compactly: ``850ms``, ``42s``, ``3m12s``, ``2h05m``, ``4d03h``."""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def table(rows: list[list[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Align *rows* (the first is the header) into columns; *right* aligns by index."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def pid_span(pids: list[int]) -> str:
    """PIDs of alike siblings in one column: ``3870-3872`` only when none is missing between.

    ``3870,...,3899`` otherwise, so that no PID in between passes for one of them.
    """
    low, high = min(pids), max(pids)
    return f"{low}-{high}" if high - low + 1 == len(set(pids)) else f"{low},...,{high}"


def plural(count: int, noun: str) -> str:
    """*noun* as it goes with *count*: ``zombie`` for 1, ``zombies`` otherwise.

    Nouns ending in a hissing sound take ``es``: ``processes``.
    """
    if count == 1:
        return noun
    return noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")


def terminal_columns() -> int:
    """The output's width: ``$COLUMNS``, else the terminal's, else 0 (not a terminal).

    What ``shutil.get_terminal_size`` answers, without importing shutil
    (which loads the compression modules: 4 ms of every ``ps``).
    """
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0  # not a terminal, closed, or replaced by an object without a file
