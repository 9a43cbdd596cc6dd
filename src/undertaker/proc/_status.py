"""Parse ``/proc/PID/status``: identity, namespaces and signal masks.

``status`` costs about as much to read as ``stat`` but is rarely needed, so the
scanner reads it only for the few processes that matter (zombies and their
parents); everything else asks for it on demand.
"""

from __future__ import annotations

from typing import NamedTuple

SIGCHLD_BIT = 1 << (17 - 1)  # signal N is bit N-1 of the hex masks


class Status(NamedTuple):
    """The fields of ``/proc/PID/status`` that undertaker uses.

    Signal sets are integers in which signal N is bit N-1, as the kernel
    prints them. ``sig_blk`` is the mask of the thread whose file was read
    (the main thread for ``/proc/PID/status``): blocking is per thread.
    """

    name: str
    state: str
    tgid: int
    ppid: int
    tracer_pid: int
    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    threads: int
    nspid: tuple[int, ...]  # outermost namespace first; the last is the PID inside its own
    sig_pnd: int  # pending for this thread
    shd_pnd: int  # pending for the whole thread group
    sig_blk: int
    sig_ign: int
    sig_cgt: int
    seccomp: int  # 0 off, 1 strict, 2 filter


class StatusParseError(ValueError):
    """A ``status`` file lacked a field undertaker needs."""


def _unescape_name(value: bytes) -> str:
    # The kernel escapes "\n" as "\\n" and "\\" as "\\\\" in the Name: line.
    text = value.decode("utf-8", "backslashreplace")
    return text.replace("\\n", "\n").replace("\\\\", "\\") if "\\" in text else text


def parse_status(data: bytes) -> Status:
    """Parse the content of one ``/proc/PID/status`` (or ``task/TID/status``) file.

    Args:
        data: the raw bytes of the file.

    Returns:
        The parsed fields. ``nspid`` falls back to ``(tgid,)`` on kernels
        before 4.1, which do not write it; ``seccomp`` falls back to 0.

    Raises:
        StatusParseError: a required line is missing or malformed.
    """
    fields: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if sep:
            fields[key] = value.strip()
    try:
        tgid = int(fields[b"Tgid"])
        uids = tuple(int(u) for u in fields[b"Uid"].split())
        nspid_raw = fields.get(b"NSpid")
        return Status(
            name=_unescape_name(fields[b"Name"]),
            state=fields[b"State"][:1].decode("ascii"),
            tgid=tgid,
            ppid=int(fields[b"PPid"]),
            tracer_pid=int(fields[b"TracerPid"]),
            uids=(uids[0], uids[1], uids[2], uids[3]),
            threads=int(fields[b"Threads"]),
            nspid=tuple(int(p) for p in nspid_raw.split()) if nspid_raw else (tgid,),
            sig_pnd=int(fields[b"SigPnd"], 16),
            shd_pnd=int(fields[b"ShdPnd"], 16),
            sig_blk=int(fields[b"SigBlk"], 16),
            sig_ign=int(fields[b"SigIgn"], 16),
            sig_cgt=int(fields[b"SigCgt"], 16),
            seccomp=int(fields.get(b"Seccomp", b"0")),
        )
    except (KeyError, IndexError, ValueError, UnicodeDecodeError) as err:
        raise StatusParseError(f"bad status file: {err!r}") from None
