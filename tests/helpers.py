"""Helpers shared by the tests: running code in a private PID namespace, the CLI."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
UNDERTAKER = [sys.executable, "-m", "undertaker"]


def can_unshare() -> bool:
    """Whether we may create PID namespaces (root and util-linux unshare)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


needs_namespace = pytest.mark.skipif(not can_unshare(), reason="needs root and unshare(1)")


def run_in_namespace(
    code: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run Python *code* as PID 1 of a fresh PID namespace with its own /proc.

    Everything it starts dies with it: when PID 1 exits the kernel kills the
    rest of the namespace, so nothing can leak onto the host.
    """
    return subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m undertaker ARGS`` and capture its output."""
    return subprocess.run(
        [*UNDERTAKER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def cli_to_full_disk(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m undertaker ARGS`` with its standard output on /dev/full."""
    return run_with_bad_stdout([*UNDERTAKER, *args], "full")


def cli_json(*args: str) -> tuple[int, Any]:
    """Run the CLI with ``--json`` and parse its output."""
    done = cli(*args, "--json")
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def run_json_script(
    script: Path, *args: str, prefix: tuple[str, ...] = (), timeout: float = 120
) -> Any:
    """Run a scenario script in a fresh interpreter (after *prefix*, e.g. unshare).

    It must exit 0 and print one JSON object as its last line, which is returned.
    """
    done = subprocess.run(
        [*prefix, sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def run_with_bad_stdout(argv: list[str], stdout: str) -> subprocess.CompletedProcess[str]:
    """Run *argv* with stdout on ``/dev/full`` (*stdout* ``"full"``) or on a pipe
    whose reader is gone before the first write (``"closed"``, as ``| head -1``).
    """
    if stdout == "full":
        target = os.open("/dev/full", os.O_WRONLY)
    else:
        read_end, target = os.pipe()
        os.close(read_end)
    try:
        return subprocess.run(
            argv, stdout=target, stderr=subprocess.PIPE, text=True, timeout=60, check=False
        )
    finally:
        os.close(target)


AS_NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]

# In a private mount namespace: a procfs with hidepid=invisible, then each
# command (argv[1], JSON: name -> undertaker arguments) run as nobody.
_HIDDEN = r"""
import json, subprocess, sys
subprocess.run(["mount", "-t", "proc", "-o", "hidepid=invisible", "proc", "/proc"], check=True)
out = {}
for name, args in json.loads(sys.argv[1]).items():
    done = subprocess.run([*sys.argv[2:], sys.executable, "-m", "undertaker", *args],
                          capture_output=True, text=True)
    out[name] = [done.returncode, done.stdout, done.stderr]
print(json.dumps(out))
"""


def run_hidden_as_nobody(commands: dict[str, list[str]]) -> dict[str, list[Any]]:
    """Run undertaker *commands* as uid 65534 over a ``hidepid=invisible`` procfs.

    Returns ``{name: [exit status, stdout, stderr]}``.
    """
    done = subprocess.run(
        ["unshare", "--mount", sys.executable, "-c", _HIDDEN, json.dumps(commands), *AS_NOBODY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@functools.cache
def events_usable() -> bool:
    """Whether an EventTable follows the kernel's events here (root, initial PID namespace)."""
    from undertaker.proc import EventTable  # noqa: PLC0415  (loads socket: only when asked)

    if os.geteuid() != 0:
        return False
    with EventTable() as table:
        return table.source == "events"


needs_events = pytest.mark.skipif(
    not events_usable(),
    reason="needs root in the initial PID namespace and the proc connector",
)


def fork_zombie(code: int = 0) -> tuple[int, float]:
    """Fork a child that exits with *code* and stays a zombie; return its PID and death time.

    The time is the child's own ``time.time()`` just before ``_exit``: its
    real exit follows within a fraction of a millisecond. The caller reaps it.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, repr(time.time()).encode())
        os._exit(code)
    os.close(write_end)
    died = float(os.read(read_end, 64))
    os.close(read_end)
    return pid, died
