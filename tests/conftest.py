"""Session-wide guards: a clean environment, and no zombie leaks from tests.

The test process becomes a child subreaper, so anything a test orphans is
re-parented here instead of escaping to the machine's init; at the end of
the session we reap whatever is left and fail loudly if it was a zombie.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

import pytest

PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop our own variables in case the user runs tests from a polluted shell."""
    for name in list(os.environ):
        if name.startswith("UNDERTAKER_") or name == "NO_COLOR":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def subreaper() -> Iterator[None]:
    """Adopt every orphan the tests make, and reap them all at the end."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
