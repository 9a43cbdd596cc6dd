"""aarch64: ``svc #0`` (01 00 00 d4) and ``struct user_pt_regs`` (34 words).

**Untested on hardware**: no aarch64 machine was available; only the layout
is unit-tested. From ``arch/arm64/kernel/signal.c``: the kernel handles
-ERESTART* *before* the ptrace stop, so at the stop ``pc`` already points at
the ``svc`` and ``x0`` holds the original first argument again; it rewrites
``x8`` to ``restart_syscall`` only while ``pc`` still equals that address.
So the current ``pc`` is never reused as the site (an ``svc`` is taken from
the vDSO or libc instead), and the verbatim restore re-runs the parent's call
from the start: right for most calls, but a relative ``nanosleep`` or a
timed futex wait then starts its full timeout again.
"""

from __future__ import annotations

from undertaker.remedy._arch import Arch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

WORDS = 34  # regs[31], sp, pc, pstate
SP, PC, PSTATE = 31, 32, 33
PSR_MODE32 = 0x10  # pstate bit 4: the task runs AArch32 code


def _current_site(_regs: Sequence[int]) -> int | None:
    return None  # see the module docstring: pc at the stop is the restart address


def _refuse(regs: Sequence[int]) -> str | None:
    if regs[PSTATE] & PSR_MODE32:
        return "an AArch32 (compat) task"
    return None


AARCH64 = Arch(
    name="aarch64",
    e_machine=0xB7,
    words=WORDS,
    insn=b"\x01\x00\x00\xd4",
    align=4,
    pc=PC,
    nr=8,
    args=(0, 1, 2, 3, 4, 5),
    ret=0,
    wait4=260,
    extra=(),
    current_site=_current_site,
    refuse=_refuse,
)
