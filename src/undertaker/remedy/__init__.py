"""Remedies: clean zombies up by acting on their parent, safely.

Above the census: they act on processes found in ``/proc``, only through
identity-checked pidfds (PID plus start time, held from check to action).

- :func:`reap_via_ptrace` makes the live parent reap its zombies (one small
  module per architecture describes registers and the system call).
- :mod:`undertaker.remedy.signals`: ``nudge`` (SIGCHLD to a parent with a
  handler) and ``kill_parent`` (SIGTERM, grace, SIGKILL; who adopted).
"""

from undertaker.remedy._errors import (
    LiveZombieLeader,
    NotAZombie,
    NotPermitted,
    OtherNamespace,
    ParentGone,
    ParentRefused,
    ReapRefused,
)
from undertaker.remedy.ptrace import (
    PtracePlan,
    PtraceResult,
    ReapInterrupted,
    ZombieOutcome,
    plan_for,
    plan_ptrace_reap,
    reap_via_ptrace,
)

__all__ = [
    "LiveZombieLeader",
    "NotAZombie",
    "NotPermitted",
    "OtherNamespace",
    "ParentGone",
    "ParentRefused",
    "PtracePlan",
    "PtraceResult",
    "ReapInterrupted",
    "ReapRefused",
    "ZombieOutcome",
    "plan_for",
    "plan_ptrace_reap",
    "reap_via_ptrace",
]
