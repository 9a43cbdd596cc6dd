"""The kernel's process events (the proc connector): who forked whom, who exited.

The kernel broadcasts a message on a netlink socket for every fork, exec and
exit on the machine once at least one listener has subscribed. PIDs in the
messages are those of the *initial* PID namespace, and only a process there
may subscribe: from inside a container the kernel ignores the request
without an answer. Before Linux 6.6 subscribing also needs CAP_NET_ADMIN;
since then any user may (seen here as uid 65534 on 6.18). A subscription
is a global counter in the kernel, so ``close()`` always sends the
unsubscribe message first; a process killed with SIGKILL cannot, and leaves
the kernel generating events until the machine reboots: since Linux 6.6 the
kernel remembers per socket whether it subscribed, and an unsubscribe from
any other socket does not lower the count (seen here on 6.18).

Records only, no policy: ``_ownership`` decides what the events mean.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
import weakref
from typing import NamedTuple

from undertaker._control_errors import NotSupported
from undertaker._errors import AccessDenied

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33  # like SO_RCVBUF, past net.core.rmem_max; needs CAP_NET_ADMIN
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

PROC_EVENT_NONE = 0  # the answer to a subscription, carrying an errno
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXEC = 0x2
PROC_EVENT_UID = 0x4
PROC_EVENT_GID = 0x40
PROC_EVENT_SID = 0x80
PROC_EVENT_PTRACE = 0x100
PROC_EVENT_COMM = 0x200
PROC_EVENT_EXIT = 0x80000000
# Events about a live task whose payload starts with (pid, tgid): kept with changes=True.
_CHANGES = frozenset(
    {
        PROC_EVENT_EXEC,
        PROC_EVENT_UID,
        PROC_EVENT_GID,
        PROC_EVENT_SID,
        PROC_EVENT_PTRACE,
        PROC_EVENT_COMM,
    }
)

_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # cn_msg: idx, val, seq, ack, len, flags
_EVENT = struct.Struct("=IIQ")  # proc_event: what, cpu, timestamp_ns
_EVENT_AT = _NLMSG.size + _CN_MSG.size  # 36: where proc_event starts
_DATA_AT = _EVENT_AT + _EVENT.size  # 52: where its event_data union starts
_FORK = struct.Struct("=iiii")  # parent_pid, parent_tgid, child_pid, child_tgid
_EXIT = struct.Struct("=iiIIii")  # pid, tgid, exit_code, exit_signal, parent_pid, parent_tgid
_TASK = struct.Struct("=ii")  # pid, tgid: how every other event's payload starts
DEFAULT_RCVBUF = 32 << 20  # 256 KiB overflowed under a fork burst here; 32 MiB kept up


class ForkEvent(NamedTuple):
    """A task was created; for a new process ``child_pid == child_tgid``."""

    parent_pid: int  # the thread that forked
    parent_tgid: int  # its process
    child_pid: int
    child_tgid: int
    timestamp_ns: int  # CLOCK_MONOTONIC


class ExitEvent(NamedTuple):
    """A task exited; for a whole process ``pid == tgid``."""

    pid: int
    tgid: int
    status: int  # the raw wait status
    exit_signal: int  # what its parent is sent (SIGCHLD, or 0 for threads)
    parent_tgid: int  # the process that must reap it; 0 before Linux 4.18
    timestamp_ns: int


class ChangeEvent(NamedTuple):
    """A live task changed: exec, comm (``PR_SET_NAME``), ids, session or tracer.

    ``what`` is the kernel's code (``PROC_EVENT_EXEC``, ``PROC_EVENT_COMM``...):
    the table only needs to know whom to read again, not what the new value is.
    """

    what: int
    pid: int
    tgid: int
    timestamp_ns: int  # CLOCK_MONOTONIC


class Batch(NamedTuple):
    """The events received since the last read, in the order the kernel queued them."""

    forks: list[ForkEvent]
    exits: list[ExitEvent]
    changes: list[ChangeEvent]  # empty unless subscribed with changes=True
    lost: bool  # the kernel dropped events (ENOBUFS): what was missed is unknown


def _message(tag: int, op: int) -> bytes:
    """A subscription request; the kernel answers with ``ack = tag + 1`` (its seq is its own)."""
    payload = struct.pack("=I", op)
    body = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, tag, len(payload), 0) + payload
    return _NLMSG.pack(_NLMSG.size + len(body), NLMSG_DONE, 0, 0, 0) + body


_INITIAL_PID_NS = "pid:[4026531836]"  # PROC_PID_INIT_INO: the same on every boot


def in_initial_pid_namespace() -> bool:
    """Whether this process is in the initial PID namespace, whose PIDs events carry.

    ``NSpid`` cannot tell: it counts levels below the namespace of the procfs
    mounted, so a container with its own ``/proc`` shows one level too.
    """
    try:
        return os.readlink("/proc/self/ns/pid") == _INITIAL_PID_NS
    except OSError:
        return False


def _unsubscribe(sock: socket.socket, tag: int) -> None:
    try:
        sock.send(_message(tag, PROC_CN_MCAST_IGNORE))
    except OSError:
        pass  # the socket is unusable: nothing more we can do for the counter
    sock.close()


class ProcEvents:
    """A subscription to fork and exit events, read without blocking.

    >>> with ProcEvents() as events:  # doctest: +SKIP
    ...     forks, exits, lost = events.read()

    Args:
        rcvbuf: the receive buffer in bytes. Each event takes about 1 KiB of
            it; the kernel drops events (``lost``) when it is full. Below
            32 MiB a fork burst overflowed here.
        answer_timeout: how long to wait for the kernel to answer the subscription.
        changes: also keep exec, comm, uid, gid, session and ptrace events
            (:meth:`read_all`); off by default, so a reader of forks and exits
            does not accumulate them.

    Raises (from the constructor):
        NotSupported: not Linux, no connector in this kernel, or this process
            is not in the initial PID namespace (a container).
        AccessDenied: not allowed to subscribe (before Linux 6.6: CAP_NET_ADMIN).
    """

    def __init__(
        self, *, rcvbuf: int = DEFAULT_RCVBUF, answer_timeout: float = 0.25, changes: bool = False
    ) -> None:
        """Subscribe, and wait for the kernel's answer so a refusal is an error now."""
        if not in_initial_pid_namespace():
            raise NotSupported("process events", "this process is not in the initial PID namespace")
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except (AttributeError, OSError) as err:
            raise NotSupported("process events", f"no proc connector: {err}") from None
        self._pending_forks: list[ForkEvent] = []
        self._pending_exits: list[ExitEvent] = []
        self._pending_changes: list[ChangeEvent] = []
        self._changes = changes
        self._lost = False
        self._tag = int.from_bytes(os.urandom(3), "little") + 1  # tells our answer apart
        try:
            self._set_buffer(sock, rcvbuf)
            sock.bind((0, CN_IDX_PROC))
            sock.settimeout(0.0)  # non-blocking
            sock.send(_message(self._tag, PROC_CN_MCAST_LISTEN))
        except PermissionError:
            sock.close()
            raise AccessDenied(None, "subscribing to process events", "CAP_NET_ADMIN") from None
        except OSError as err:
            sock.close()
            raise NotSupported("process events", str(err)) from None
        self._sock: socket.socket | None = sock
        self._finalizer = weakref.finalize(self, _unsubscribe, sock, self._tag)
        try:
            self._await_answer(answer_timeout)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _set_buffer(sock: socket.socket, size: int) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # capped by rmem_max

    def _await_answer(self, timeout: float) -> None:
        """Read until the kernel answers our subscription; keep the events before it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fileno()], [], [], left)[0]:
                raise NotSupported("process events", "the kernel did not answer the subscription")
            answer = self._drain(answer_to=self._tag)
            if answer is not None:
                break
        if answer == errno.EPERM:
            raise AccessDenied(None, "subscribing to process events", "CAP_NET_ADMIN")
        if answer:
            raise NotSupported("process events", os.strerror(answer))

    def fileno(self) -> int:
        """The socket's descriptor: readable when events are waiting."""
        if self._sock is None:
            raise ValueError("these ProcEvents are closed")
        return self._sock.fileno()

    def read(self) -> tuple[list[ForkEvent], list[ExitEvent], bool]:
        """Return the events received since the last call, without blocking.

        The third value is True when the kernel dropped events since the last
        call because the receive buffer was full: what was missed is unknown.
        """
        batch = self.read_all()
        return batch.forks, batch.exits, batch.lost

    def read_all(self) -> Batch:
        """Return every event received since the last call, without blocking."""
        self._drain()
        batch = Batch(self._pending_forks, self._pending_exits, self._pending_changes, self._lost)
        self._pending_forks, self._pending_exits, self._pending_changes = [], [], []
        self._lost = False
        return batch

    def _drain(self, answer_to: int | None = None) -> int | None:
        """Move waiting messages to the pending lists; return the answer's errno if seen."""
        sock = self._sock
        if sock is None:
            return None
        answer = None
        while True:
            try:
                data = sock.recv(256)
            except BlockingIOError:
                return answer
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                self._lost = True  # the kernel dropped messages; the socket goes on
                continue
            if len(data) < _DATA_AT:
                continue
            what, _cpu, stamp = _EVENT.unpack_from(data, _EVENT_AT)
            if what == PROC_EVENT_FORK and len(data) >= _DATA_AT + _FORK.size:
                ppid, ptgid, pid, tgid = _FORK.unpack_from(data, _DATA_AT)
                self._pending_forks.append(ForkEvent(ppid, ptgid, pid, tgid, stamp))
            elif what == PROC_EVENT_EXIT and len(data) >= _DATA_AT + _EXIT.size:
                pid, tgid, status, exit_signal, _ppid, ptgid = _EXIT.unpack_from(data, _DATA_AT)
                self._pending_exits.append(ExitEvent(pid, tgid, status, exit_signal, ptgid, stamp))
            elif what in _CHANGES and self._changes and len(data) >= _DATA_AT + _TASK.size:
                pid, tgid = _TASK.unpack_from(data, _DATA_AT)
                self._pending_changes.append(ChangeEvent(what, pid, tgid, stamp))
            elif what == PROC_EVENT_NONE and answer_to is not None:
                ack = _CN_MSG.unpack_from(data, _NLMSG.size)[3]
                if ack == answer_to + 1:  # ours: other listeners' answers are broadcast too
                    answer = struct.unpack_from("=I", data, _DATA_AT)[0]

    def forget_in_child(self) -> None:
        """In the child of ``fork()``: close this copy, leaving the parent subscribed."""
        if self._sock is not None:
            self._finalizer.detach()
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Unsubscribe, then close the socket; safe to call twice."""
        if self._sock is not None:
            self._sock = None
            self._finalizer()

    def __enter__(self) -> ProcEvents:  # noqa: PYI034  (Self needs 3.11)
        """Use as a context manager: closed (and unsubscribed) on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the block."""
        self.close()
