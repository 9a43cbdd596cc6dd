"""Argument types and options shared by several subcommands."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from undertaker.cli._exit import EXIT_ERROR, EXIT_FOUND, EXIT_INCOMPLETE, EXIT_OK

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "EXIT_ERROR",
    "EXIT_FOUND",
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_STATUS_HELP",
    "add_color_option",
    "add_proc_option",
    "flatten",
    "pid_arg",
    "pid_list_arg",
    "seconds_between",
    "user_arg",
]

# The epilog of ps and tree: what a cron job tests.
EXIT_STATUS_HELP = (
    "Exit status: 0 no zombies, 1 zombies found, 2 error (bad input, unreadable /proc, "
    "standard output unwritable), 3 no zombies seen but the view is incomplete (hidepid "
    "or other users' processes unreadable: run as root), 141 output pipe closed early."
)


def pid_arg(text: str) -> int:
    """Parse a PID: a positive decimal integer in ASCII digits (``int`` takes others too)."""
    if not text.isascii():
        raise argparse.ArgumentTypeError(f"not a PID: {text!r} (ASCII digits only)")
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a PID: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a PID: {text!r} (PIDs are positive)")
    return value


def pid_list_arg(text: str) -> list[int]:
    """Parse ``PID[,PID...]``; an empty item (``1,,2``, ``1,``) is an error."""
    return [pid_arg(part) for part in text.split(",")]


def user_arg(text: str) -> int:
    """Parse a user name or numeric uid (ASCII digits) into a uid."""
    if text.isascii() and text.isdigit():
        return int(text)
    import pwd  # noqa: PLC0415  (only --user needs the password database)

    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such user: {text!r}") from None


def flatten(groups: list[list[int]] | None) -> set[int]:
    """Merge the lists a repeatable ``PID[,PID]`` option collected."""
    return {item for group in groups or [] for item in group}


def add_proc_option(sub: argparse.ArgumentParser) -> None:
    """``--proc PATH``: the procfs root to read."""
    sub.add_argument(
        "--proc",
        metavar="PATH",
        default=os.environ.get("UNDERTAKER_PROC", "/proc"),
        help="procfs to read (default /proc, or $UNDERTAKER_PROC)",
    )


def add_color_option(sub: argparse.ArgumentParser) -> None:
    """``--color auto|always|never``."""
    sub.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour: on a terminal only (auto), always, or never; NO_COLOR is honoured",
    )


def seconds_between(low: float, high: float) -> Callable[[str], float]:
    """An argument type for a number of seconds from *low* to *high*, both included."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"takes {low:g} <= SECONDS <= {high:g}, not {text!r}")
        return value

    return parse
