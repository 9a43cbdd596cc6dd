"""What the ptrace remedy needs to know about one CPU architecture.

Registers are read and written as one ``NT_PRSTATUS`` register set, a flat
array of 64-bit words; an architecture says which word is which, how its
system call instruction looks, and how a call frame is built on a copy of
the saved registers.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MASK64 = (1 << 64) - 1


def signed(word: int) -> int:
    """Read a 64-bit register word as a signed C long (a syscall's -errno)."""
    word &= MASK64
    return word - (1 << 64) if word >> 63 else word


@dataclass(frozen=True)
class Arch:
    """One architecture's register layout and system call convention.

    Attributes:
        name: the ``uname -m`` name.
        e_machine: the ELF ``e_machine`` of its executables.
        words: the number of 64-bit words in its ``NT_PRSTATUS`` set.
        insn: the bytes of the system call instruction.
        align: the alignment an instruction needs.
        pc: the index of the program counter.
        nr: the index of the register holding the system call number.
        args: the indexes of the argument registers, in order.
        ret: the index of the register holding the return value.
        wait4: the number of ``wait4``.
        extra: what else a call frame must set, as (index, value) pairs.
        current_site: the site of the system call the task is stopped in,
            when the instruction there may be reused (None otherwise).
        refuse: a reason to refuse the task (a 32-bit compat mode), or None.
    """

    name: str
    e_machine: int
    words: int
    insn: bytes
    align: int
    pc: int
    nr: int
    args: tuple[int, ...]
    ret: int
    wait4: int
    extra: tuple[tuple[int, int], ...]
    current_site: Callable[[Sequence[int]], int | None]
    refuse: Callable[[Sequence[int]], str | None]

    def call_frame(self, saved: Sequence[int], site: int, nr: int, *args: int) -> list[int]:
        """A copy of *saved* set up to run system call *nr* with *args* at *site*."""
        regs = list(saved)
        regs[self.pc] = site
        regs[self.nr] = nr
        for index, value in zip(self.args, args, strict=False):
            regs[index] = value & MASK64
        for index, value in self.extra:
            regs[index] = value & MASK64
        return regs

    def finished(self, regs: Sequence[int], site: int) -> bool:
        """Whether a single step from *site* has executed the instruction."""
        return regs[self.pc] == site + len(self.insn)

    def result(self, regs: Sequence[int]) -> int:
        """The system call's return value (negative: -errno)."""
        return signed(regs[self.ret])


def for_machine(machine: str) -> Arch:
    """The architecture module for a ``uname -m`` name.

    Raises:
        KeyError: no module for that architecture.
    """
    if machine == "x86_64":
        from undertaker.remedy._x86_64 import X86_64  # noqa: PLC0415

        return X86_64
    if machine == "aarch64":
        from undertaker.remedy._aarch64 import AARCH64  # noqa: PLC0415

        return AARCH64
    raise KeyError(machine)
