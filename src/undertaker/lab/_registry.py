"""Every experiment of the lab, in the order ``lab list`` shows them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from undertaker.lab import (
    _cost,
    _pdeath,
    _server,
    _sigchld,
    _states,
    _status,
    _three,
    _tty,
    _waiting,
    _zombies,
)

if TYPE_CHECKING:
    from undertaker.lab._core import Experiment

EXPERIMENTS: tuple[Experiment, ...] = (
    *_zombies.EXPERIMENTS,
    *_sigchld.EXPERIMENTS,
    *_waiting.EXPERIMENTS,
    *_status.EXPERIMENTS,
    *_three.EXPERIMENTS,
    *_tty.EXPERIMENTS,
    *_server.EXPERIMENTS,
    *_cost.EXPERIMENTS,
    *_states.EXPERIMENTS,
    *_pdeath.EXPERIMENTS,
)


class UnknownExperiment(LookupError):
    """No experiment has this id."""


def find(exp_id: str) -> Experiment:
    """The experiment called *exp_id*.

    Raises:
        UnknownExperiment: there is none.
    """
    for exp in EXPERIMENTS:
        if exp.id == exp_id:
            return exp
    raise UnknownExperiment(exp_id)
