"""^C during ``undertaker reap --method ptrace --yes``: what was reaped is still said and logged.

The exit statuses of the zombies reaped before the ^C exist nowhere else
once they are gone; before, the CLI exited 130 with neither a line nor a log
entry for them.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from helpers import UNDERTAKER
from test_reap_ptrace import parent, start
from undertaker.testing import sleep_until


def test_interrupted_ptrace_reap_logs_what_it_reaped(tmp_path: Path) -> None:
    log = tmp_path / "reap.jsonl"
    with parent("pipe", 1000) as p:
        argv = [*UNDERTAKER, "reap", "--parent", str(p.pid), "--method", "ptrace", "--yes"]
        cli = start([*argv, "--log", str(log)])
        try:
            # The 50th zombie gone: the reap is under way, far from done.
            fiftieth = f"/proc/{p.zombies[49]}"
            assert sleep_until(lambda: not os.path.exists(fiftieth), 10)
            cli.send_signal(signal.SIGINT)  # our own child, not reaped: the PID is safe
            out, _ = cli.communicate(timeout=30)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait(10)
        gone = [z for z in p.zombies if not os.path.exists(f"/proc/{z}")]
        assert p.proc.stdin is not None
        p.proc.stdin.write("go on\n")
        p.proc.stdin.flush()
        report = p.result()
    assert cli.returncode == 130
    assert 50 <= len(gone) < 1000
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["interrupted"] is True
    assert entry["reaped"] == gone
    statuses = {z["pid"]: z for z in entry["zombies"]}
    assert all(statuses[z]["status"] is not None for z in gone)
    assert f"ptrace: reaped {len(gone)} of 1000" in out
    assert f"interrupted; {1000 - len(gone)} zombie(s) left as they were" in out
    assert report["result"] == "go on\n"  # its read() went on, unharmed
    assert all(report["waits"][str(z)] == "ECHILD" for z in gone)
