"""Every way out of an EventTable unsubscribes (issue 11): no event traffic remains.

The kernel generates process events while its count of subscribers is above
zero, and closing a socket does not lower it. To see the count from outside,
a *passive* socket joins the connector's multicast group without subscribing:
it receives events exactly while someone is subscribed. After each way out,
a fork must bring it nothing.
"""

from __future__ import annotations

import errno
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import events_usable

SCRIPT = Path(__file__).with_name("event_exits.py")
NETLINK_CONNECTOR, CN_IDX_PROC = 11, 1


@pytest.fixture
def passive() -> Iterator[socket.socket]:
    """A socket in the events' multicast group that never subscribes."""
    if os.geteuid() != 0 or not events_usable():
        pytest.skip("needs root in the initial PID namespace and the proc connector")
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    sock.bind((0, CN_IDX_PROC))
    sock.setblocking(False)  # noqa: FBT003  (the socket API)
    if _traffic(sock):
        sock.close()
        pytest.skip("another program on this machine is subscribed: traffic cannot be told apart")
    yield sock
    sock.close()


def _traffic(sock: socket.socket) -> bool:
    """Whether the kernel sends process events now: fork a child and listen."""
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass  # drained
    except OSError as err:
        if err.errno == errno.ENOBUFS:
            return True  # so many events that they overflowed
        raise
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return bool(select.select([sock], [], [], 0.3)[0])


def _start(mode: str, log: Path | None = None) -> tuple[subprocess.Popen[str], int]:
    """Run the scenario (under strace when *log* is given); return it and its PID."""
    prefix = ["strace", "-f", "-qq", "-e", "trace=sendto", "-e", "signal=none", "-o", str(log)]
    proc = subprocess.Popen(
        [*(prefix if log else []), sys.executable, str(SCRIPT), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    word, pid = proc.stdout.readline().split()
    assert word == "subscribed"
    return proc, int(pid)


def _finish(proc: subprocess.Popen[str]) -> int:
    """End it gently (EOF on stdin, then SIGINT) and return its exit status.

    Never SIGKILL: a subscriber killed that way leaves the kernel generating
    events until reboot, and every later run of these tests would skip.
    """
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        return proc.wait(30)


def _step(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout is not None
    assert proc.stdout.readline() == "left\n"


@pytest.mark.parametrize("mode", ["close", "exception", "garbage"])
def test_no_traffic_after_leaving_while_still_running(passive: socket.socket, mode: str) -> None:
    """close(), a with block left by an exception, garbage collection: each unsubscribes."""
    proc, _ = _start(mode)
    try:
        assert _traffic(passive)  # the control: a live subscription is seen
        _step(proc)
        assert not _traffic(passive)
    finally:
        assert _finish(proc) == 0


def test_no_traffic_after_the_interpreter_exits(passive: socket.socket) -> None:
    """A table never closed is unsubscribed when the interpreter exits."""
    proc, _ = _start("exit")
    try:
        assert _traffic(passive)
    finally:
        assert _finish(proc) == 0
    assert not _traffic(passive)


def test_no_traffic_after_ctrl_c(passive: socket.socket) -> None:
    """SIGINT (KeyboardInterrupt) ends the program, and the subscription with it."""
    proc, pid = _start("interrupt")
    try:
        assert _traffic(passive)
    finally:
        os.kill(pid, signal.SIGINT)  # our child, still running: it waits for us
        assert _finish(proc) != 0
    assert not _traffic(passive)


def test_forked_child_leaves_the_parent_subscribed(passive: socket.socket) -> None:
    """A child that exits normally does not unsubscribe its parent's inherited socket."""
    proc, _ = _start("fork")
    try:
        assert _traffic(passive)  # after the child's exit: still subscribed
        _step(proc)
        assert not _traffic(passive)
    finally:
        assert _finish(proc) == 0


# What the program told the kernel, whatever else runs on the machine: each
# LISTEN (op 1) and IGNORE (op 2) is a 40-byte message to the connector
# (cn_msg idx 1, val 1), which strace shows as a netlink header and bytes.
_MESSAGE = re.compile(
    r"^(\d+) +sendto\(\d+, \[\{nlmsg_len=40, nlmsg_type=NLMSG_DONE.*\}, "
    r'"\\x01\\x00\\x00\\x00\\x01\\x00\\x00\\x00(?:\\x[0-9a-f]{2}){12}'
    r'\\x0([12])\\x00\\x00\\x00"\]',
    re.MULTILINE,
)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize("mode", ["close", "exception", "garbage", "exit", "interrupt", "fork"])
def test_every_listen_is_matched_by_an_ignore(tmp_path: Path, mode: str) -> None:
    """Seen by strace: each way out sends the kernel one IGNORE per LISTEN, from the subscriber."""
    if os.geteuid() != 0 or not events_usable():
        pytest.skip("needs root in the initial PID namespace and the proc connector")
    log = tmp_path / "strace.log"
    proc, pid = _start(mode, log)
    try:
        if mode == "interrupt":
            os.kill(pid, signal.SIGINT)
        elif mode != "exit":
            _step(proc)
    finally:
        status = _finish(proc)
    assert (status != 0) == (mode == "interrupt")
    trace = log.read_text()
    sent = [(int(who), int(op)) for who, op in _MESSAGE.findall(trace)]
    assert sent == [(pid, 1), (pid, 2)], trace[-3000:]


_SERVERS = {
    # name -> (arguments of undertaker, the line that says it is subscribed and running)
    "top": (["top", "-n", "10000", "--interval", "0.1"], "q: quit"),
    "exporter": (["exporter", "--events", "--listen", "127.0.0.1:0"], "listening on"),
}


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("command", sorted(_SERVERS))
def test_long_runners_unsubscribe_when_signalled(
    tmp_path: Path, command: str, sig: signal.Signals
) -> None:
    """top and exporter --events, ended by SIGTERM, SIGINT or SIGHUP, send their IGNORE."""
    if command == "exporter":
        pytest.importorskip("prometheus_client")
    if os.geteuid() != 0 or not events_usable():
        pytest.skip("needs root in the initial PID namespace and the proc connector")
    args, ready = _SERVERS[command]
    log = tmp_path / "strace.log"
    prefix = ["strace", "-f", "-qq", "-e", "trace=sendto", "-e", "signal=none", "-o", str(log)]
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "undertaker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # until it says it is subscribed and running
            if ready in line:
                break
        else:
            pytest.fail(f"{command} ended before it was running")
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as kids:
            (runner,) = map(int, kids.read().split())  # strace's one child
        os.kill(runner, sig)  # our grandchild, running: strace waits for it
        status = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert status == 0
    sent = [(int(who), int(op)) for who, op in _MESSAGE.findall(log.read_text())]
    assert sent == [(runner, 1), (runner, 2)]
