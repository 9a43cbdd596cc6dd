"""``undertaker lab``: the seed articles' experiments, run against the real kernel.

Each :class:`Experiment` states one claim of an article, runs isolated in a
sandbox (:func:`run_isolated`) and returns a verdict computed from what the
kernel did: ``confirmed``, ``refuted`` or ``depends``.
"""

from undertaker.lab._core import (
    CONFIRMED,
    DEPENDS,
    ERROR,
    REFUTED,
    SEEDS,
    SKIPPED,
    VERDICTS,
    Experiment,
    Verdict,
)
from undertaker.lab._registry import EXPERIMENTS, UnknownExperiment, find
from undertaker.lab._sandbox import can_use_namespace, run_isolated

__all__ = [
    "CONFIRMED",
    "DEPENDS",
    "ERROR",
    "EXPERIMENTS",
    "REFUTED",
    "SEEDS",
    "SKIPPED",
    "VERDICTS",
    "Experiment",
    "UnknownExperiment",
    "Verdict",
    "can_use_namespace",
    "find",
    "run_isolated",
]
