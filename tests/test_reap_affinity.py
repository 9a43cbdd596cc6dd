"""The tracer follows the parent's CPU only within the caller's own affinity.

``taskset -c 0 undertaker reap`` (or a library caller that pinned itself)
keeps the tracer on CPU 0 even when the parent runs elsewhere: root could move
the helper anywhere, which would put the tracer on a CPU the user kept free.
"""

from __future__ import annotations

import os
import threading

import pytest

from test_reap_ptrace import _unharmed, parent
from undertaker.remedy import reap_via_ptrace


def _tracer_cpus(pid: int) -> str | None:
    """The Cpus_allowed_list of whoever traces *pid* now, or None (untraced, or gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            tracer = int(status.read().split("TracerPid:")[1].split()[0])
        if not tracer:
            return None
        with open(f"/proc/{tracer}/status") as status:
            return status.read().split("Cpus_allowed_list:")[1].split()[0]
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_tracer_stays_on_the_callers_cpus() -> None:
    """Caller pinned to one CPU, parent to another: every stop is traced from the caller's CPU."""
    ours = os.sched_getaffinity(0)
    mine, theirs = min(ours), max(ours)
    seen: set[str] = set()
    done = threading.Event()

    with parent("sleep", zombies=60) as p:
        os.sched_setaffinity(p.pid, {theirs})  # our own child, not reaped: the PID is safe

        def watch() -> None:
            while not done.is_set():
                cpus = _tracer_cpus(p.pid)
                if cpus is not None:
                    seen.add(cpus)

        watcher = threading.Thread(target=watch)
        os.sched_setaffinity(0, {mine})
        watcher.start()
        try:
            result = reap_via_ptrace(p.pid, p.zombies, max_stop=0.001)
        finally:
            done.set()
            watcher.join()
            os.sched_setaffinity(0, ours)
        assert result.reaped == p.zombies
        assert len(result.stops) > 1
        report = p.result()
    assert seen == {str(mine)}  # it was seen, and never on the parent's CPU
    _unharmed(report, p.zombies)
