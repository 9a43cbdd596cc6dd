"""Run ``undertaker ARGS`` on this terminal and report whether its modes came back.

Used by test_top.py under a pseudo-terminal: records the terminal's modes,
runs the command (with SIGINT at its default, so Ctrl-C on the terminal
reaches it while this wrapper survives), then prints ``RESULT {json}`` with
the command's exit status and whether the modes are exactly as before.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import termios


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main() -> None:
    before = termios.tcgetattr(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command
    proc = subprocess.Popen(
        [sys.executable, "-m", "undertaker", *sys.argv[1:]],
        preexec_fn=_default_sigint,  # noqa: PLW1509  (no threads here)
    )
    print(f"STARTED {proc.pid}", flush=True)
    status = proc.wait()
    after = termios.tcgetattr(0)
    print("RESULT " + json.dumps({"status": status, "restored": before == after}), flush=True)


if __name__ == "__main__":
    main()
