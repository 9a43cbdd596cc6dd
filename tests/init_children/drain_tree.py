"""Leave work behind for the drain, then exit 0 when stdin reaches EOF.

Starts two grandchildren and reports them as one JSON line:
- ``slow``: escapes with setsid (new session and group), handles SIGTERM by
  writing "slow got TERM" and exiting 0 after SLOW seconds;
- ``stubborn``: ignores SIGTERM; only SIGKILL ends it.

Usage: drain_tree.py SLOW
"""

import json
import os
import signal
import sys
import time

slow_delay = float(sys.argv[1])


def run_slow():
    os.setsid()

    def on_term(_signum, _frame):
        os.write(1, b"slow got TERM\n")
        time.sleep(slow_delay)
        os.write(1, b"slow exits\n")
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    os.write(ready_w, b"x")
    while True:
        time.sleep(60)


def run_stubborn():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.write(ready_w, b"x")
    while True:
        time.sleep(60)


ready_r, ready_w = os.pipe()
pids = {}
for name, body in (("slow", run_slow), ("stubborn", run_stubborn)):
    pid = os.fork()
    if pid == 0:
        os.close(0)
        body()
    pids[name] = pid
for _ in pids:
    os.read(ready_r, 1)
sessions = {name: os.getsid(pid) for name, pid in pids.items()}
print(json.dumps({"main": os.getpid(), "sid": os.getsid(0), **pids, "sessions": sessions}))
sys.stdout.flush()
while os.read(0, 4096):
    pass
