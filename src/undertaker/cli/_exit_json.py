"""The ``exit`` object of a zombie, shared by ``ps --json`` and ``why --json``.

Its own module so ``why`` does not import the ``ps`` table view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from undertaker.census import Zombie


def exit_json(zombie: Zombie) -> dict[str, Any] | None:
    """How *zombie* died, as ``ps --json`` and ``why --json`` print it (docs/json.md)."""
    status = zombie.status
    if status is None:
        return None
    return {
        "raw": status.raw,
        "code": status.exit_code,
        "signal": status.term_signal,
        "core_dumped": status.core_dumped,
        "shell_code": status.shell_code,
        "text": str(status),
    }
