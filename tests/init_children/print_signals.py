"""Print every signal received, one number per line; exit at EOF on stdin.

Options: ``--ignore SIG`` (repeatable) ignores a signal; ``--grandchild``
also starts a copy of this script (without the options) as a grandchild.
Lines are prefixed with ``child`` or ``grandchild``.
"""

import os
import signal
import subprocess
import sys

role = "child"
ignored = set()
grandchild = None
args = sys.argv[1:]
while args:
    word = args.pop(0)
    if word == "--ignore":
        ignored.add(signal.Signals["SIG" + args.pop(0)])
    elif word == "--grandchild":
        grandchild = True
    elif word == "--role":
        role = args.pop(0)


def echo(signum, _frame):
    os.write(1, f"{role} {signum}\n".encode())


for sig in range(1, 32):
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        continue
    signal.signal(sig, signal.SIG_IGN if sig in ignored else echo)

if grandchild:
    argv = [sys.executable, __file__, "--role", "grandchild"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
os.write(1, f"ready {role} {os.getpid()}\n".encode())
while True:
    try:
        if not os.read(0, 4096):
            break
    except InterruptedError:
        pass
if grandchild:
    proc.stdin.close()
    proc.wait()
