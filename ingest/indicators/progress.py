"""Progress against targets and the status word. Pure.

progress = value ÷ target for "at least", target ÷ value for "below" (so that 1.0
or more always means the target is reached). A target is due at the end of its
year, Beijing time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Final

from ingest.indicators.catalogue import Target

BJT: Final = timezone(timedelta(hours=8))
STATUSES: Final = ("met", "on_track", "behind", "no_target", "no_data")


def progress(value: float | None, target: float, direction: str) -> float | None:
    if value is None:
        return None
    if direction == "at_least":
        return value / target
    return target / value if value > 0 else None


def met(value: float, target: float, direction: str) -> bool:
    return value >= target if direction == "at_least" else value < target


def due(year: int) -> datetime:
    """The moment a target of `year` falls due: the start of the next year, BJT."""
    return datetime(year + 1, 1, 1, tzinfo=BJT)


def status(value: float | None, targets: Sequence[Target], direction: str, as_of: datetime) -> str:
    """met: the last target is reached; behind: a target that fell due is missed;
    on_track: no target due yet is missed; no_target / no_data otherwise."""
    if not targets:
        return "no_target"
    if value is None:
        return "no_data"
    if met(value, targets[-1].value, direction):
        return "met"
    for t in targets:
        if due(t.year) <= as_of and not met(value, t.value, direction):
            return "behind"
    return "on_track"
