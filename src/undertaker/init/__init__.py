"""``undertaker run``: a container init and child subreaper.

Reaps every orphan, forwards signals (rewritten, delayed or to the process
group on request), exits like a shell would, and on exit drains the whole
process tree: SIGTERM, a grace period, SIGKILL, reap. See ``docs/init.md``.

Modules, one concern each:

* ``_options``   command line and ``UNDERTAKER_*`` variables, ``--help``
* ``_signals``   signal names, the blocked set, the child's inherited state
* ``_prctl``     subreaper and parent-death signal
* ``_spawn``     fork, process group, terminal, exec errors
* ``_supervise`` the loop: wait, forward, reap, job control
* ``_shutdown``  the drain: stop signal, who is spared, grace, SIGKILL
* ``_drain``     descendants from /proc, PID-reuse-safe signalling
* ``_report``    warnings, JSON lines, summary
* ``_main``      ``main()``: the steps in order

Start-up cost matters here: nothing heavier than ``os`` and ``_signal`` is
imported unless an option needs it.
"""

from __future__ import annotations

from undertaker.init._main import exit_code, main, run

__all__ = ["exit_code", "main", "run"]
