"""Make N orphans that exit at once, then check that someone reaped them all.

A middle process forks N grandchildren blocked on a pipe, and exits; they
are re-parented to the nearest subreaper (or PID 1). Closing the pipe lets
them all exit together. We then wait until every one of them is gone from
/proc (a zombie still has an entry). Prints one JSON line and exits 0 when
all were reaped, 1 when some are left (the negative control).

Usage: orphans.py N [TIMEOUT]
"""

import json
import os
import sys
import time

count = int(sys.argv[1])
timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
release_r, release_w = os.pipe()
report_r, report_w = os.pipe()
middle = os.fork()
if middle == 0:
    os.close(report_r)
    os.close(release_w)
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os.close(report_w)  # or the parent would never see EOF on the report
            os.read(release_r, 1)  # EOF when the parent closes the write end
            os._exit(0)
        pids.append(pid)
    os.write(report_w, json.dumps(pids).encode())
    os._exit(0)
os.close(report_w)
os.close(release_r)
data = b""
while chunk := os.read(report_r, 65536):
    data += chunk
orphans = json.loads(data)
os.waitpid(middle, 0)


def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except FileNotFoundError:
        return None
    return int(raw[raw.rfind(b")") + 2 :].split()[1])


adopted_by = {ppid(pid) for pid in orphans}
os.close(release_w)  # all exit at once
deadline = time.monotonic() + timeout
left = orphans
while left and time.monotonic() < deadline:
    left = [pid for pid in left if os.path.exists(f"/proc/{pid}")]
    time.sleep(0.005)
print(json.dumps({"orphans": orphans, "left": left, "adopted_by": sorted(map(str, adopted_by))}))
sys.exit(1 if left else 0)
