"""Why a parent does not reap: pure verdicts from the kernel's own evidence.

The layer above :mod:`undertaker.proc` and :mod:`undertaker.census`.
:func:`explain` gathers the evidence about each responsible parent (its
SIGCHLD disposition and masks, state, tracer, wchan and syscall, PID
namespace, cgroup, whether it has ever reaped) into an :class:`Evidence`,
and :func:`diagnose`, a pure function, turns that into a stable verdict
name and fixes ranked from least to most disruptive. Front ends only format.
"""

from undertaker.diagnose._container import Container, container_of
from undertaker.diagnose._evidence import Evidence, gather, is_python
from undertaker.diagnose._explain import (
    Explanation,
    Growth,
    LeaderReport,
    NothingToExplain,
    ParentReport,
    explain,
    watch,
)
from undertaker.diagnose._fixes import CODE, OPERATIONAL, Fix, fixes_for
from undertaker.diagnose._names import VERDICTS
from undertaker.diagnose._signals import mask_names, sigchld_disposition
from undertaker.diagnose._syscalls import syscall_name
from undertaker.diagnose._verdict import Diagnosis, diagnose, leader_diagnosis

__all__ = [
    "CODE",
    "OPERATIONAL",
    "VERDICTS",
    "Container",
    "Diagnosis",
    "Evidence",
    "Explanation",
    "Fix",
    "Growth",
    "LeaderReport",
    "NothingToExplain",
    "ParentReport",
    "container_of",
    "diagnose",
    "explain",
    "fixes_for",
    "gather",
    "is_python",
    "leader_diagnosis",
    "mask_names",
    "sigchld_disposition",
    "syscall_name",
    "watch",
]
