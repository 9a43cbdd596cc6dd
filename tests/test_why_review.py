"""``undertaker why`` and ``doctor`` where a first reading misleads: hidden views, merged
signals, namespace inits, parents out of sight, unreadable wchan, hostile names."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import needs_namespace
from undertaker.testing import ZombieParent, ZombieSpec

AS_NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]

# In a private mount namespace (still the initial PID namespace), mount a
# procfs with hidepid=invisible over /proc and run why and doctor as nobody.
HIDDEN = r"""
import json, subprocess, sys
subprocess.run(["mount", "-t", "proc", "-o", "hidepid=invisible", "proc", "/proc"], check=True)
out = {}
runs = (("why", ["why"]), ("json", ["why", "--json"]), ("pid", ["why", sys.argv[1]]),
        ("doctor", ["doctor", "--json"]))
for name, args in runs:
    done = subprocess.run([*sys.argv[2:], sys.executable, "-m", "undertaker", *args],
                          capture_output=True, text=True)
    out[name] = [done.returncode, done.stdout, done.stderr]
print(json.dumps(out))
"""


@needs_namespace
def test_hidepid_why_and_doctor_say_the_view_is_incomplete() -> None:
    """Root's zombies hidden from nobody: no all-clear, exit 3 as ps; a hidden PID may be hidden."""
    with ZombieParent([ZombieSpec(code=4)]) as parent:
        done = subprocess.run(
            ["unshare", "--mount", sys.executable, "-c", HIDDEN, str(parent.pid), *AS_NOBODY],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    rc, text, err = out["why"]
    assert (rc, err) == (3, "")
    assert "no zombies seen: the view is incomplete" in text
    assert "no zombies\n" not in text.replace("no zombies seen", "")
    assert "hidepid=invisible" in text
    rc, body, _ = out["json"]
    doc = json.loads(body)
    assert rc == 3
    assert (doc["incomplete"], doc["hidepid"], doc["parents"]) == (True, "invisible", [])
    rc, text, err = out["pid"]
    assert rc == 2
    assert "may be hidden" in err
    assert "no such process" not in err
    rc, body, _ = out["doctor"]
    findings = {f["check"]: f for f in json.loads(body)["findings"]}
    assert "lower bound" in findings["view"]["fact"] or "hidden" in findings["view"]["fact"]
    # The PID count comes from the kernel's task count, not nobody's own few processes.
    used = int(findings["pid_max"]["fact"].split(": ")[1].split(" of ")[0])
    assert used > 5
