"""Energy from register series, and PUE as a ratio of energies. Pure.

A meter reports cumulative registers (kWh). Energy over a window is the sum of the
forward steps of the register; a step where either register goes backwards (a
reset, a meter swap, a glitch) or where IT energy grows faster than facility energy
counts as no energy for both, so that the two sums always cover the same intervals.

A series is a sequence of `Segment`s: one raw sample is a segment whose first and
last values are the same; an hourly bucket of a continuous aggregate is a segment
with its first/last/min/max. A bucket whose first is not its minimum or whose last
is not its maximum had a backward step inside: its own span is left out (a reset);
one whose IT energy grew more than its facility energy is left out too (rejected).

The rule of the rollup is `meter_energy`: a meter's samples in the window, grouped
in hourly buckets (UTC hours, the buckets of `readings_datacenter_registers_hourly`),
each bucket one segment. That is what an hourly aggregate can answer exactly, so the
sample path and the bucket path of `store.energies` give the same figures — a rule
that needed every sample could not be read from buckets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

BUCKET = timedelta(hours=1)  # the width of the register aggregate's buckets


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime
    facility_first: float
    facility_last: float
    it_first: float
    it_last: float
    facility_min: float | None = None  # None: a raw sample (first == last == min == max)
    facility_max: float | None = None
    it_min: float | None = None
    it_max: float | None = None

    @classmethod
    def sample(cls, ts: datetime, facility: float, it: float) -> Segment:
        return cls(ts, ts, facility, facility, it, it)

    def reset_inside(self) -> bool:
        """A backward step of either register inside the bucket."""
        if self.facility_min is None:
            return False
        return not (
            self.facility_first == self.facility_min
            and self.facility_last == self.facility_max
            and self.it_first == self.it_min
            and self.it_last == self.it_max
        )

    def consistent(self) -> bool:
        return not self.reset_inside() and (
            self.it_last - self.it_first <= self.facility_last - self.facility_first
        )


@dataclass(slots=True)
class Energy:
    """Energy of one meter (or a sum of meters) over a window."""

    facility_kwh: float = 0.0
    it_kwh: float = 0.0
    covered_s: float = 0.0  # seconds of the window whose energy was counted
    resets: int = 0  # backward steps of either register (not counted as energy)
    rejected: int = 0  # steps where IT energy outgrew facility energy (not counted)
    meters: int = 0
    first: datetime | None = field(default=None)
    last: datetime | None = field(default=None)

    def add(self, other: Energy) -> None:
        self.facility_kwh += other.facility_kwh
        self.it_kwh += other.it_kwh
        self.covered_s += other.covered_s
        self.resets += other.resets
        self.rejected += other.rejected
        self.meters += other.meters
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last

    @property
    def pue(self) -> float | None:
        """Σ facility ÷ Σ IT; None without IT energy."""
        return self.facility_kwh / self.it_kwh if self.it_kwh > 0 else None


def _step(out: Energy, d_facility: float, d_it: float, seconds: float) -> None:
    if d_facility < 0 or d_it < 0:
        out.resets += 1
    elif d_it > d_facility:
        out.rejected += 1
    else:
        out.facility_kwh += d_facility
        out.it_kwh += d_it
        out.covered_s += seconds


def register_energy(series: Sequence[Segment]) -> Energy:
    """Energy of one meter from its segments in time order."""
    out = Energy(meters=1 if series else 0)
    prev: Segment | None = None
    for seg in series:
        if seg.reset_inside():
            out.resets += 1
        else:
            _step(
                out,
                seg.facility_last - seg.facility_first,
                seg.it_last - seg.it_first,
                (seg.end - seg.start).total_seconds(),
            )
        if prev is not None:
            _step(
                out,
                seg.facility_first - prev.facility_last,
                seg.it_first - prev.it_last,
                (seg.start - prev.end).total_seconds(),
            )
        prev = seg
    if series:
        out.first, out.last = series[0].start, series[-1].end
    return out


def bucket_of(ts: datetime) -> datetime:
    """The start of the hourly bucket holding `ts` (UTC hours, as date_bin and
    time_bucket align them)."""
    t = ts.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


def hourly_segments(samples: Sequence[tuple[datetime, float, float]]) -> list[Segment]:
    """(ts, facility, it) samples in time order as one segment per hourly bucket."""
    out: list[Segment] = []
    group: list[tuple[datetime, float, float]] = []

    def close() -> None:
        fs = [f for _, f, _ in group]
        its = [i for _, _, i in group]
        first, last = group[0][0], group[-1][0]
        out.append(Segment(first, last, fs[0], fs[-1], its[0], its[-1], min(fs), max(fs), min(its), max(its)))

    for sample in samples:
        if group and bucket_of(sample[0]) != bucket_of(group[0][0]):
            close()
            group = []
        group.append(sample)
    if group:
        close()
    return out


def meter_energy(samples: Sequence[tuple[datetime, float, float]]) -> Energy:
    """The rule: energy of one meter from its (ts, facility, it) samples in the window,
    in time order, over hourly segments."""
    return register_energy(hourly_segments(samples))


def total(energies: Iterable[Energy]) -> Energy:
    out = Energy()
    for e in energies:
        out.add(e)
    return out


def coverage(e: Energy, window_s: float) -> float:
    """Share of the window (per meter) whose energy was counted, 0..1."""
    if e.meters == 0 or window_s <= 0:
        return 0.0
    return min(1.0, e.covered_s / (e.meters * window_s))


def mean_of_ratios(samples: Sequence[tuple[float, float]]) -> float:
    """The wrong way, kept for tests and docs: the mean of per-interval ratios."""
    ratios = [f / i for f, i in samples if i > 0]
    return sum(ratios) / len(ratios)
