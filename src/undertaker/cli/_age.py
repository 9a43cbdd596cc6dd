"""``--min-age DURATION``: only zombies dead for at least that long count.

A cron job running ``undertaker ps --min-age 5m || alert`` should not fire
for the zombie a busy server reaps a millisecond later.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from undertaker.census import Census

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([smhd]?)", re.ASCII)


def duration_arg(text: str) -> float:
    """Parse ``30s``, ``5m``, ``1h``, ``2d`` or plain seconds (``1.5``) into seconds."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (e.g. 30s, 5m, 1h, 2d, or seconds like 1.5)"
        )
    return float(found[1]) * _UNITS[found[2]]


def older_than(census: Census, seconds: float, now: float) -> tuple[Census, int]:
    """Keep the zombies dead for at least *seconds*; return the census and how many were dropped.

    A zombie whose time of death is unknown is judged by its start time, an
    upper bound on its age: it may count when it should not, never the reverse.
    """
    kept = [z for z in census.zombies if now - z.since >= seconds]
    if len(kept) == len(census.zombies):
        return census, 0
    ids = {id(z) for z in kept}
    parents = []
    for group in census.parents:
        mine = [z for z in group.zombies if id(z) in ids]
        if mine:
            parents.append(group._replace(zombies=mine))
    parents.sort(key=lambda g: (-len(g.zombies), g.pid))
    return census._replace(zombies=kept, parents=parents), len(census.zombies) - len(kept)


def add_min_age_option(sub: argparse.ArgumentParser) -> None:
    """``--min-age DURATION`` (``ps`` and ``tree``)."""
    sub.add_argument(
        "--min-age",
        type=duration_arg,
        metavar="DURATION",
        help="count only zombies dead for at least DURATION (30s, 5m, 1h, 2d, or "
        "seconds); exit 1 only for those. Without a time of death, the start time counts",
    )
