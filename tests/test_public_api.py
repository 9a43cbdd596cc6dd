"""The public surface: __all__ is exact and sorted, and ``import undertaker`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from importlib.resources import files

import pytest

import undertaker


@pytest.mark.smoke
def test_all_matches_public_names() -> None:
    """__all__ lists every public name of the package root, sorted (httpx's idea)."""
    for name in undertaker.__all__:  # lazily exported names resolve, and stay
        assert getattr(undertaker, name) is not None
    public = sorted(
        name
        for name, value in vars(undertaker).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "importlib", "TYPE_CHECKING", "Any"}
    )
    assert undertaker.__all__ == sorted(undertaker.__all__)
    assert sorted([*public, "__version__"]) == sorted(undertaker.__all__)


@pytest.mark.smoke
def test_import_is_light() -> None:
    """The root loads no asyncio, multiprocessing, subprocess or ctypes (PID 1 starts fast)."""
    code = "import json, sys, undertaker; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    heavy = {"asyncio", "multiprocessing", "subprocess", "ctypes", "concurrent", "threading"}
    assert set() == heavy & loaded
    # Only the errors and the wait-status decoder load with the root.
    ours = {name for name in loaded if name.startswith("undertaker")}
    assert ours == {"undertaker", "undertaker._errors", "undertaker.wait"}


def test_public_api_is_typed() -> None:
    """The package ships py.typed, so type checkers read our annotations."""
    assert files("undertaker").joinpath("py.typed").is_file()
