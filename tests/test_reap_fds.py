"""reap with many file descriptors: a pidfd is held per zombie, from check to action.

In a storm of over a thousand zombies the report pipe's number is past what
select() takes (1,023): the reap failed with a traceback after the parent
was already traced. Out of descriptors, the error said /proc showed another
PID namespace.
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from helpers import UNDERTAKER
from test_reap_ptrace import _unharmed, parent, reap_all
from undertaker.testing import ZombieParent, ZombieSpec, proc_state

HIGH = 1100  # past select()'s FD_SETSIZE of 1,024


@contextmanager
def descriptors_above(count: int) -> Iterator[None]:
    """Hold descriptors up to *count*, so the next ones opened are numbered above it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < count + 64:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 64), hard))
    held: list[int] = []
    try:
        with open(os.devnull) as null:
            while not held or held[-1] < count:
                held.append(os.dup(null.fileno()))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_reap_with_descriptors_numbered_past_select() -> None:
    with parent("sleep") as p:
        with descriptors_above(HIGH):
            reap_all(p)  # before the fix: ValueError, filedescriptor out of range in select()
        report = p.result()
    _unharmed(report, p.zombies)


def _reap(limits: str, parent: int) -> subprocess.CompletedProcess[str]:
    script = f'ulimit {limits}; exec "$@"'
    argv = ["bash", "-c", script, "bash", *UNDERTAKER, "reap", "--parent", str(parent)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_low_soft_limit_is_raised_and_a_hard_one_is_said() -> None:
    """80 zombies: a soft limit of 40 is raised (exit 0); a hard one is said in a line (exit 2)."""
    with ZombieParent([ZombieSpec(code=3)] * 80) as zp:
        raised = _reap("-S -n 40", zp.pid)
        hard = _reap("-n 40", zp.pid)
        states = {proc_state(z) for z in zp.zombies}
    assert raised.returncode == 0, raised.stderr
    assert "would make" in raised.stdout
    assert hard.returncode == 2
    assert hard.stderr.startswith("undertaker: error: out of file descriptors: ")
    assert "ulimit -n" in hard.stderr
    assert hard.stderr.count("\n") == 1, hard.stderr
    assert states == {"Z"}  # a dry run, then nothing done
