"""The small program experiments run, and where its core files may go."""

from __future__ import annotations

import os
import resource
import shutil
from typing import NoReturn

SLEEP = shutil.which("sleep") or "/bin/sleep"  # small: its core file is small too


def comm(pid: int) -> str:
    """The command name of *pid*, ``""`` when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as name:
            return name.read().strip()
    except FileNotFoundError:
        return ""


def core_pattern() -> str:
    """``kernel.core_pattern``, or ``""`` when unreadable."""
    try:
        with open("/proc/sys/kernel/core_pattern") as pattern:
            return pattern.read().strip()
    except OSError:
        return ""


def cores_stay_local() -> bool:
    """Whether a core dump lands in the dumping process's directory, where we clean up.

    A pattern starting with ``|`` hands cores to a collector, an absolute one
    writes elsewhere: then the lab makes no core files at all.
    """
    pattern = core_pattern()
    return bool(pattern) and not pattern.startswith(("|", "/")) and os.access(SLEEP, os.X_OK)


def count_cores(core_dir: str) -> int:
    """Core files written under *core_dir* by :func:`exec_sleep`."""
    return sum(len(files) for _, _, files in os.walk(core_dir))


def exec_sleep(core_dir: str | None, inherit_limit: bool = False) -> NoReturn:
    """Become ``sleep 5``; dump core into a directory of our own under *core_dir*, or never.

    Each process gets its own directory: with the plain pattern ``core`` two
    dumps in one directory would overwrite each other. The soft RLIMIT_CORE
    is raised to the hard one, or with *inherit_limit* left as the lab got it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if core_dir is not None:
        core_dir = os.path.join(core_dir, str(os.getpid()))
        os.mkdir(core_dir)
        os.chdir(core_dir)
    if not inherit_limit:
        soft = hard if core_dir else 0
    resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
    os.execv(SLEEP, [SLEEP, "5"])  # noqa: S606  (a fixed program, no shell)
