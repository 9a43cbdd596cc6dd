"""prctl controls: subreaper and parent-death signal, checked in fresh processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from undertaker import NotSupported, is_subreaper, set_parent_death_signal
from undertaker.prctl import _check, prctl_function

# Each check runs in a new interpreter: the test session's own flags stay as
# conftest set them (subreaper on, no parent-death signal).
PROBE = r"""
import json, signal
from undertaker import (become_subreaper, is_subreaper, parent_death_signal,
                        set_parent_death_signal)
out = {"subreaper_before": is_subreaper(), "pdeathsig_before": parent_death_signal()}
become_subreaper()
out["subreaper_after"] = is_subreaper()
become_subreaper(False)
out["subreaper_cleared"] = is_subreaper()
set_parent_death_signal(signal.SIGUSR1)
out["pdeathsig_after"] = int(parent_death_signal())
set_parent_death_signal(None)
out["pdeathsig_cleared"] = parent_death_signal()
print(json.dumps(out))
"""


def _probe() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=30
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.smoke
def test_flags_set_read_back_and_clear() -> None:
    """Both flags start unset in a new process, read back what we set, and clear."""
    assert _probe() == {
        "subreaper_before": False,
        "pdeathsig_before": None,
        "subreaper_after": True,
        "subreaper_cleared": False,
        "pdeathsig_after": signal.SIGUSR1,
        "pdeathsig_cleared": None,
    }


@pytest.mark.smoke
def test_session_is_a_subreaper() -> None:
    """conftest made the test session a subreaper; is_subreaper sees it."""
    assert is_subreaper()


def test_invalid_signal_is_a_value_error() -> None:
    """An impossible signal number is refused before reaching the kernel."""
    with pytest.raises(ValueError, match="not a signal"):
        set_parent_death_signal(999)


def test_einval_becomes_not_supported() -> None:
    """A prctl the kernel rejects (EINVAL) explains itself as NotSupported."""
    result = prctl_function()(0x7FFF_FFFF, 0, 0, 0, 0)  # no such prctl option
    with pytest.raises(NotSupported, match="rejected the prctl option"):
        _check(result, "PR_BOGUS")
