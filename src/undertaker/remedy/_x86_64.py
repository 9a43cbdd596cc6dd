"""x86_64: ``syscall`` (0f 05) and ``struct user_regs_struct`` (27 words).

Tested on the real kernel. The frame sets ``orig_rax`` to -1 so the kernel's
restart logic, which runs on the registers we leave at the stop, sees no
interrupted call in the injected frame; restoring the saved words verbatim
(``orig_rax`` and the -ERESTART* value in ``rax``) then lets the kernel
restart the parent's own call with what remains of its timeout.
"""

from __future__ import annotations

from undertaker.remedy._arch import Arch, signed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# struct user_regs_struct, <sys/user.h>: the order of the NT_PRSTATUS words.
NAMES = (
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8"),
    *("rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags"),
    *("rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"),
)
R = {name: index for index, name in enumerate(NAMES)}
USER_CS = 0x33  # a 64-bit task; 0x23 is a 32-bit (compat) one


def _current_site(regs: Sequence[int]) -> int | None:
    # Stopped inside a system call: the instruction that entered it is just
    # before rip (the caller checks the bytes really are 0f 05).
    if signed(regs[R["orig_rax"]]) >= 0:
        return int(regs[R["rip"]]) - 2
    return None


def _refuse(regs: Sequence[int]) -> str | None:
    if regs[R["cs"]] != USER_CS:
        return f"a 32-bit (compat) task (cs={regs[R['cs']]:#x})"
    return None


X86_64 = Arch(
    name="x86_64",
    e_machine=0x3E,
    words=len(NAMES),
    insn=b"\x0f\x05",
    align=1,
    pc=R["rip"],
    nr=R["rax"],
    args=(R["rdi"], R["rsi"], R["rdx"], R["r10"], R["r8"], R["r9"]),
    ret=R["rax"],
    wait4=61,
    extra=((R["orig_rax"], -1),),
    current_site=_current_site,
    refuse=_refuse,
)
