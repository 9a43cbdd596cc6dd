"""Ways a program holding an EventTable can end, for test_event_unsubscribe.py.

``python event_exits.py MODE``: subscribes, prints ``subscribed``, then ends
the way MODE says. The test checks from outside that the kernel stopped
generating process events afterwards.
"""

from __future__ import annotations

import gc
import os
import sys
import time

from undertaker.proc import EventTable


def ready() -> None:
    print(f"subscribed {os.getpid()}", flush=True)


def left() -> None:
    print("left", flush=True)


def fail() -> None:
    raise RuntimeError("leaving the block")


def main(mode: str) -> None:
    if mode == "close":
        table = EventTable()
        table.snapshot()
        ready()
        sys.stdin.readline()
        table.close()
        left()
        sys.stdin.readline()  # the test looks now, while we still run
    elif mode == "exception":
        try:
            with EventTable() as table:
                table.snapshot()
                ready()
                sys.stdin.readline()
                fail()
        except RuntimeError:
            left()
        sys.stdin.readline()
    elif mode == "garbage":
        table = EventTable()
        ready()
        sys.stdin.readline()
        del table
        gc.collect()
        left()
        sys.stdin.readline()
    elif mode == "exit":
        table = EventTable()  # never closed: the interpreter's exit must unsubscribe
        ready()
        sys.stdin.readline()
    elif mode == "interrupt":
        table = EventTable()
        ready()
        time.sleep(60)  # SIGINT: KeyboardInterrupt, the interpreter exits with it
    elif mode == "fork":
        table = EventTable()
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # the child's finalizers run: they must not unsubscribe the parent
        os.waitpid(pid, 0)
        ready()
        sys.stdin.readline()
        table.close()
        left()
        sys.stdin.readline()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1])
