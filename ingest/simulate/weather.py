"""Regional weather: rain events, air temperature, humidity and wind. Pure.

Every series is generated lazily, in time order, from a per-region stream seeded
by (seed, region), so any process asking about any device gets the same weather.
Rain is a sequence of non-overlapping events per region with a triangular
intensity profile; the cumulative depth at any instant is closed-form, so a
device's rain register is `factor × cumulative(region, t)` and never goes down.
Temperature and humidity are a seasonal mean, a daily cycle and an hourly AR(1)
anomaly; cold anomalies come with moist air, as Guizhou's freezing-rain spells do.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Final

from ingest.simulate.rng import Rng, derive_seed

HOUR: Final = 3600.0
DAY: Final = 86400.0
_CST: Final = 8 * HOUR  # China Standard Time offset

# Rain events per day and median event depth (mm), by month (index 0 = January).
_EVENTS_PER_DAY: Final = (0.12, 0.15, 0.2, 0.3, 0.4, 0.5, 0.45, 0.4, 0.35, 0.3, 0.2, 0.12)
_MEDIAN_DEPTH: Final = (3.0, 3.5, 5.0, 8.0, 11.0, 13.0, 12.0, 11.0, 9.0, 7.0, 4.0, 3.0)
_MAX_DEPTH: Final = 250.0
_MAX_PEAK_MM_H: Final = 100.0

# (annual mean °C, seasonal half-range °C, winter RH %, summer RH %) at station level.
_CLIMATE: Final = {
    "520100": (15.3, 10.5, 80.0, 78.0),
    "520200": (13.0, 10.0, 88.0, 80.0),
    "520300": (15.5, 11.0, 80.0, 77.0),
    "520400": (14.5, 10.0, 82.0, 78.0),
    "520500": (12.0, 10.0, 88.0, 80.0),
    "520600": (16.5, 11.0, 78.0, 77.0),
    "522300": (16.5, 9.0, 78.0, 80.0),
    "522600": (16.0, 10.5, 80.0, 78.0),
    "522700": (16.0, 10.0, 80.0, 78.0),
    "guian": (15.0, 10.5, 80.0, 78.0),
}
_T_PHI: Final = 0.97  # hourly persistence of the temperature anomaly (~1.5 days)
_T_SD: Final = 3.5
_RH_PHI: Final = 0.9
_RH_SD: Final = 7.0
_W_PHI: Final = 0.9


@dataclass(frozen=True, slots=True)
class RainEvent:
    start: float  # epoch seconds
    end: float
    depth_mm: float
    peak: float = 0.35  # where the intensity peaks, as a fraction of the duration

    def fraction(self, t: float) -> float:
        """Share of the event's depth fallen by `t`."""
        if t <= self.start:
            return 0.0
        if t >= self.end:
            return 1.0
        x = (t - self.start) / (self.end - self.start)
        m = self.peak
        return x * x / m if x <= m else 1.0 - (1.0 - x) ** 2 / (1.0 - m)


def month_of(t: float) -> int:
    """Month index 0..11 in China Standard Time (cheap, no datetime)."""
    doy = day_of_year(t)
    return min(11, int(doy / 30.44))


def day_of_year(t: float) -> float:
    days = (t + _CST) / DAY
    # Day of a mean year counted from 1970-01-01: within a day of the calendar, enough for climate.
    return days % 365.2425


def local_hour(t: float) -> float:
    return ((t + _CST) / HOUR) % 24.0


class _Rain:
    __slots__ = ("cum", "ends", "events", "next_start", "rng", "starts")

    def __init__(self, rng: Rng, origin: float) -> None:
        self.rng = rng
        self.events: list[RainEvent] = []
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.cum: list[float] = [0.0]  # cum[i] = depth of events[:i]
        self.next_start = origin + rng.expovariate(_EVENTS_PER_DAY[month_of(origin)] / DAY)

    def extend(self, until: float) -> None:
        rng = self.rng
        while self.next_start <= until:
            start = self.next_start
            m = month_of(start)
            depth = min(_MAX_DEPTH, rng.lognormal(_MEDIAN_DEPTH[m], 1.0))
            hours = max(rng.uniform(2.0, 12.0), 2.0 * depth / _MAX_PEAK_MM_H)
            ev = RainEvent(start, start + hours * HOUR, round(depth, 2), rng.uniform(0.25, 0.5))
            self.append(ev)
            self.next_start = ev.end + rng.expovariate(_EVENTS_PER_DAY[m] / DAY)

    def append(self, ev: RainEvent) -> None:
        self.events.append(ev)
        self.starts.append(ev.start)
        self.ends.append(ev.end)
        self.cum.append(self.cum[-1] + ev.depth_mm)

    def cumulative(self, t: float) -> float:
        self.extend(t)
        i = bisect.bisect_left(self.ends, t)  # events[:i] have ended by t
        total = self.cum[i]
        if i < len(self.events):
            total += self.events[i].depth_mm * self.events[i].fraction(t)
        return total


class _Series:
    """An hourly AR(1) anomaly from the origin on, linearly interpolated."""

    __slots__ = ("origin", "phi", "rng", "sd", "values")

    def __init__(self, rng: Rng, origin: float, phi: float, sd: float) -> None:
        self.rng, self.origin, self.phi, self.sd = rng, origin, phi, sd
        self.values = [rng.gauss(0.0, sd)]

    def at(self, t: float) -> float:
        x = max(0.0, (t - self.origin) / HOUR)
        k = int(x)
        values = self.values
        if k + 1 >= len(values):
            innov = self.sd * math.sqrt(1.0 - self.phi * self.phi)
            rng, phi = self.rng, self.phi
            while k + 1 >= len(values):
                values.append(phi * values[-1] + rng.gauss(0.0, innov))
        f = x - k
        return values[k] * (1.0 - f) + values[k + 1] * f


class Weather:
    """The weather of every region from `origin` on (earlier times read as `origin`).

    `storms` are extra rain events added on top of the generated ones (tests and
    demos use them to force a flood)."""

    def __init__(self, seed: int, origin: float, storms: tuple[tuple[str, RainEvent], ...] = ()) -> None:
        self.seed = seed
        self.origin = origin
        self._rain: dict[str, _Rain] = {}
        self._temp: dict[str, _Series] = {}
        self._rh: dict[str, _Series] = {}
        self._wind: dict[str, _Series] = {}
        self._storms: dict[str, list[RainEvent]] = {}
        for region, ev in storms:
            self._storms.setdefault(region, []).append(ev)

    def _rain_of(self, region: str) -> _Rain:
        r = self._rain.get(region)
        if r is None:
            r = self._rain[region] = _Rain(Rng(derive_seed(self.seed, "rain", region)), self.origin)
        return r

    def rain_cumulative(self, region: str, t: float) -> float:
        """Depth (mm) fallen in the region between the origin and `t`."""
        total = self._rain_of(region).cumulative(t) if t > self.origin else 0.0
        for ev in self._storms.get(region, ()):
            total += ev.depth_mm * ev.fraction(t)
        return total

    def rain_between(self, region: str, a: float, b: float) -> float:
        return max(0.0, self.rain_cumulative(region, b) - self.rain_cumulative(region, a))

    def _series(self, table: dict[str, _Series], kind: str, region: str, phi: float, sd: float) -> _Series:
        s = table.get(region)
        if s is None:
            s = table[region] = _Series(Rng(derive_seed(self.seed, kind, region)), self.origin, phi, sd)
        return s

    def air(self, region: str, t: float) -> tuple[float, float, float]:
        """(air temperature °C, relative humidity %, wind speed m/s) at station level."""
        mean, half, rh_winter, rh_summer = _CLIMATE[region]
        season = math.cos(2.0 * math.pi * (day_of_year(t) - 16.0) / 365.2425)  # 1 in mid-January
        daily = math.cos(2.0 * math.pi * (local_hour(t) - 15.0) / 24.0)  # 1 at 15:00
        t_anom = self._series(self._temp, "temp", region, _T_PHI, _T_SD).at(t)
        temp = mean - half * season + 3.0 * daily + t_anom
        rh_mean = rh_summer + (rh_winter - rh_summer) * (0.5 + 0.5 * season)
        rh_anom = self._series(self._rh, "rh", region, _RH_PHI, _RH_SD).at(t)
        rh = min(100.0, max(20.0, rh_mean + rh_anom - 1.0 * t_anom - 4.0 * daily))
        w_anom = self._series(self._wind, "wind", region, _W_PHI, 0.5).at(t)
        wind = 3.0 * math.exp(w_anom)
        return temp, rh, wind
