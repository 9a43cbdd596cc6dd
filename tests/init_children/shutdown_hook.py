"""A process whose SIGTERM handler runs a helper: the drain must let the helper finish.

The helper is ``sh -c 'sleep DELAY; echo done > MARK'`` (sh forks sleep, so the
helper is a small tree of its own). The handler then either waits for it and
exits (``wait``), or exits at once and leaves it to the init (``leave``).

Where the handler runs (``where``):
- ``orphan``: in a worker double-forked away from the main child, so the init
  adopts it and the drain sends it SIGTERM;
- ``main``: in the main child itself (SIGTERM forwarded by the init).

Prints ``ready PID`` (the handler's process). With ``orphan``, the main child
then exits 0 at EOF on stdin; with ``main``, it waits for its SIGTERM.

Usage: shutdown_hook.py MARK DELAY wait|leave orphan|main
"""

import os
import signal
import subprocess
import sys

mark, delay, how, where = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def on_term(_signum, _frame):
    helper = subprocess.Popen(["sh", "-c", f"sleep {delay}; echo done > {mark}"])
    if how == "wait":
        helper.wait()
    os._exit(0)


def serve():
    signal.signal(signal.SIGTERM, on_term)
    while True:
        signal.pause()


if where == "orphan":
    ready_r, ready_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            os.close(0)
            signal.signal(signal.SIGTERM, on_term)
            os.write(ready_w, f"{os.getpid()}\n".encode())
            while True:
                signal.pause()
        os._exit(0)
    os.waitpid(middle, 0)  # the worker is the init's now
    worker = os.read(ready_r, 64).decode().strip()
    print(f"ready {worker}", flush=True)
    while os.read(0, 4096):
        pass
else:  # not at EOF on stdin: Python's exit would restore the default SIGTERM action
    signal.signal(signal.SIGTERM, on_term)
    print(f"ready {os.getpid()}", flush=True)
    while True:
        signal.pause()
