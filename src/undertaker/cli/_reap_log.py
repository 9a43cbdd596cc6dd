"""``undertaker reap --log FILE``: one JSON line per action (who, what, evidence, result)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from undertaker.remedy._target import Target, Zombie


def describe_target(target: Target) -> dict[str, Any]:
    """The identity we checked: PID, start time (clock ticks after boot), command."""
    return {"pid": target.pid, "start_ticks": target.start_ticks, "comm": target.comm}


def describe_zombie(zombie: Zombie) -> dict[str, Any]:
    """A zombie's identity and the exit status it kept (None: hidden from us)."""
    status = None if zombie.status is None else zombie.status.raw
    described = describe_target(zombie)
    described.update(status=status, status_text=str(zombie.status or "hidden"))
    return described


class LogUnwritable(Exception):
    """A line could not be written to the log (a full disk): the action it records was done."""


class ActionLog:
    """Append-only JSON lines; a no-op without a file."""

    def __init__(self, path: str | None) -> None:
        """Open *path* for appending (line-buffered), or log nothing when None."""
        self.path = path
        self._file = open(path, "a", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, action: str, parent: Target, zombies: list[Zombie], **fields: Any) -> None:
        """Record one action with the identities it was taken on."""
        if self._file is None:
            return
        entry = {
            "time": time.time(),
            "who": {"pid": os.getpid(), "uid": os.getuid(), "argv": sys.argv},
            "action": action,
            "parent": describe_target(parent),
            "zombies": [describe_zombie(z) for z in zombies],
            **fields,
        }
        try:
            self._file.write(json.dumps(entry) + "\n")
        except OSError as err:
            raise LogUnwritable(
                f"cannot log the {action} above to {self.path}: {err.strerror}"
            ) from None

    def close(self) -> None:
        """Close the file; a failure was already reported by :meth:`write`."""
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.close()
