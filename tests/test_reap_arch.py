"""The per-architecture modules of the ptrace remedy: register layouts and call frames.

aarch64 is checked on its layout only (no aarch64 machine here); x86_64 is
also exercised on the real kernel by test_reap_ptrace.py.
"""

from __future__ import annotations

import struct

import pytest

from undertaker.remedy._aarch64 import AARCH64, PSTATE
from undertaker.remedy._arch import MASK64, for_machine, signed
from undertaker.remedy._x86_64 import X86_64, R


def test_signed_reads_negative_errno() -> None:
    """A register holding -10 (ECHILD) reads as -10, a PID as itself."""
    assert signed((-10) & MASK64) == -10
    assert signed(4242) == 4242


def test_x86_64_layout_is_user_regs_struct() -> None:
    """27 words (216 bytes), in <sys/user.h> order; syscall is 0f 05."""
    assert X86_64.words * 8 == 216
    assert (R["r15"], R["rax"], R["orig_rax"], R["rip"], R["cs"], R["gs"]) == (
        0,
        10,
        15,
        16,
        17,
        26,
    )
    assert X86_64.insn == b"\x0f\x05"
    assert X86_64.wait4 == 61


def test_x86_64_call_frame_sets_wait4_and_hides_the_interrupted_call() -> None:
    """rip, rax and the four arguments (r10, not rcx) are set; orig_rax is -1; the rest kept."""
    saved = list(range(100, 127))
    frame = X86_64.call_frame(saved, 0x7000, 61, 42, 0, 1, 0)
    assert frame[R["rip"]] == 0x7000
    assert frame[R["rax"]] == 61
    assert [frame[R[n]] for n in ("rdi", "rsi", "rdx", "r10")] == [42, 0, 1, 0]
    assert frame[R["orig_rax"]] == MASK64
    assert frame[R["rsp"]] == saved[R["rsp"]]
    assert saved == list(range(100, 127))  # the saved copy is untouched
    assert X86_64.finished([*frame[:16], 0x7002, *frame[17:]], 0x7000)


def test_x86_64_reuses_the_interrupted_syscall_site_only_inside_a_call() -> None:
    """Stopped in a syscall (orig_rax >= 0): rip - 2; in user code (orig_rax -1): none."""
    regs = [0] * 27
    regs[R["rip"]], regs[R["orig_rax"]] = 0x1002, 230
    assert X86_64.current_site(regs) == 0x1000
    regs[R["orig_rax"]] = MASK64
    assert X86_64.current_site(regs) is None


def test_x86_64_refuses_compat_tasks() -> None:
    """cs 0x23 (a 32-bit task) is refused, 0x33 accepted."""
    regs = [0] * 27
    regs[R["cs"]] = 0x33
    assert X86_64.refuse(regs) is None
    regs[R["cs"]] = 0x23
    assert "32-bit" in (X86_64.refuse(regs) or "")


def test_aarch64_layout_is_user_pt_regs() -> None:
    """regs[31], sp, pc, pstate: 34 words (272 bytes); svc #0 is 0xd4000001 little-endian."""
    assert AARCH64.words * 8 == 272
    assert AARCH64.pc == 32
    assert PSTATE == 33
    assert struct.unpack("<I", AARCH64.insn) == (0xD4000001,)
    assert AARCH64.align == 4
    assert AARCH64.wait4 == 260  # asm-generic


def test_aarch64_call_frame_uses_x8_and_x0_to_x3() -> None:
    """The number goes in x8, arguments in x0..x3, the result comes back in x0."""
    saved = list(range(1000, 1034))
    frame = AARCH64.call_frame(saved, 0x4000, 260, 42, 0, 1, 0)
    assert frame[8] == 260
    assert frame[:4] == [42, 0, 1, 0]
    assert frame[AARCH64.pc] == 0x4000
    assert frame[4:8] == saved[4:8]
    assert frame[31] == saved[31]  # sp untouched
    frame[0] = (-10) & MASK64
    assert AARCH64.result(frame) == -10
    assert AARCH64.finished([*frame[:32], 0x4004, 0], 0x4000)


def test_aarch64_never_reuses_the_current_pc_and_refuses_aarch32() -> None:
    """pc at the stop is the restart address: never the site; pstate bit 4 means AArch32."""
    regs = [0] * 34
    assert AARCH64.current_site(regs) is None
    assert AARCH64.refuse(regs) is None
    regs[PSTATE] = 0x10
    assert "AArch32" in (AARCH64.refuse(regs) or "")


def test_for_machine() -> None:
    """Known machines get their module; others a KeyError."""
    assert for_machine("x86_64") is X86_64
    assert for_machine("aarch64") is AARCH64
    with pytest.raises(KeyError):
        for_machine("riscv64")
