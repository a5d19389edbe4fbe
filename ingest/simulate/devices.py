"""Per-class device physics: what a device measures and when it reports. Pure.

A model is driven by the simulation with the simulated time `t` (epoch seconds) of
its next report; `fire(t, full)` advances the physics to `t` and returns the
readings, the states (None when there are none) and the time of the next report.
`full` asks for everything a fresh connection would send (all points, all states).
"""

from __future__ import annotations

import math
from typing import Final, Protocol

from ingest.simulate.fleet import ICING_REGIONS, Device
from ingest.simulate.rng import Rng
from ingest.simulate.weather import DAY, HOUR, Weather, day_of_year, local_hour

RAIN_REPORT_MM: Final = 0.5  # 5-minute rain that triggers an extra 5-minute report
ICING_T_MIN: Final = -5.0
ICING_T_MAX: Final = 1.0
ICING_RH_MIN: Final = 85.0  # strictly above

Metrics = dict[str, float]
States = dict[str, str]


class Model(Protocol):
    def first(self) -> float: ...

    def fire(self, t: float, full: bool) -> tuple[Metrics, States | None, float]: ...


def in_icing_window(air_temp_c: float, humidity_pct: float) -> bool:
    return ICING_T_MIN <= air_temp_c <= ICING_T_MAX and humidity_pct > ICING_RH_MIN


def _align_up(t: float, step: float, phase: float = 0.0) -> float:
    return math.ceil((t - phase) / step) * step + phase


class ReservoirModel:
    """Catchment → soil store → reservoir: level rises with rain (routed through a
    soil store so it rises at a plausible rate), spills down towards an operating
    level below the flood-limit level, and otherwise draws down slowly."""

    def __init__(self, dev: Device, rng: Rng, weather: Weather, start: float) -> None:
        self.rng, self.weather, self.region = rng, weather, dev.region
        flood_limit = float(dev.attributes["flood_limit_level_m"])
        self.target = flood_limit - rng.uniform(0.2, 0.9)
        self.low = self.target - 3.0
        self.level = self.target - rng.uniform(0.0, 1.2)
        self.level_ref = self.level
        self.filtered = self.level
        self.soil = 0.0
        self.factor = rng.uniform(0.7, 1.3)  # local rain versus the regional figure
        self.ratio = rng.uniform(10.0, 30.0)  # metres of level per metre of runoff
        self.coef = rng.uniform(0.4, 0.65)  # runoff coefficient
        self.tau_runoff = rng.uniform(2.0, 4.0) * HOUR
        self.tau_release = rng.uniform(6.0, 20.0) * HOUR  # ungated spillways: fast
        self.tau_dry = rng.uniform(40.0, 90.0) * DAY
        self.tau_seep = rng.uniform(6.0, 24.0) * HOUR
        self.piezometers = [
            (rng.uniform(3.0, 25.0), rng.uniform(0.3, 0.8))
            for _ in range(int(dev.sizing.get("piezometers", 2)))
        ]
        self.flow = (rng.uniform(0.2, 5.0), rng.uniform(0.1, 0.6))
        self.rain_base = round(rng.uniform(0.0, 3000.0), 1)
        self.start = start
        self.cum0 = weather.rain_cumulative(self.region, start)
        self.t = start

    def _rain(self, a: float, b: float) -> float:
        return self.factor * self.weather.rain_between(self.region, a, b)

    def first(self) -> float:
        return self._next(_align_up(self.start, 300.0) - 300.0)

    def _next(self, t: float) -> float:
        hour = math.floor(t / HOUR) * HOUR + HOUR
        x = t + 300.0
        while x < hour:
            if self._rain(x - 300.0, x) >= RAIN_REPORT_MM:
                return x
            x += 300.0
        return hour

    def _step(self, dt: float, rain: float) -> None:
        self.soil += self.coef * rain
        q = self.soil * (1.0 - math.exp(-dt / self.tau_runoff))
        self.soil -= q
        level = self.level + q / 1000.0 * self.ratio
        if level > self.target:
            level = self.target + (level - self.target) * math.exp(-dt / self.tau_release)
        else:
            level = self.low + (level - self.low) * math.exp(-dt / self.tau_dry)
        self.level = level
        self.filtered += (level - self.filtered) * (1.0 - math.exp(-dt / self.tau_seep))

    def _advance(self, t: float) -> None:
        a = self.t
        if t <= a:
            return
        w, region = self.weather, self.region
        c_prev = w.rain_cumulative(region, a)
        if w.rain_cumulative(region, t) <= c_prev:
            self._step(t - a, 0.0)
        else:  # rain: 5-minute steps
            x = a
            while x < t:
                y = min(t, x + 300.0)
                c = w.rain_cumulative(region, y)
                self._step(y - x, self.factor * (c - c_prev))
                c_prev, x = c, y
        self.t = t

    def fire(self, t: float, full: bool) -> tuple[Metrics, States | None, float]:
        self._advance(t)
        cum = self.weather.rain_cumulative(self.region, t)
        m: Metrics = {
            "rain_5min_mm": round(self._rain(t - 300.0, t), 1),
            "rain_1h_mm": round(self._rain(t - HOUR, t), 1),
            "rain_cum_mm": round(self.rain_base + self.factor * (cum - self.cum0), 1),
            "level_m": round(self.level, 3),
        }
        if full or t % HOUR == 0.0:  # dam-safety readings are hourly
            rng = self.rng
            rise = self.filtered - self.level_ref
            for k, (base, gain) in enumerate(self.piezometers, 1):
                m[f"seepage_pressure_m.P{k}"] = round(base + gain * rise + rng.gauss(0.0, 0.01), 3)
            m["seepage_flow_lps.Q1"] = round(max(0.0, self.flow[0] + self.flow[1] * rise), 3)
            sun = max(0.0, math.sin(math.pi * (local_hour(t) - 7.0) / 12.0))
            m["battery_v"] = round(12.3 + 1.4 * sun + rng.gauss(0.0, 0.03), 2)
        return m, None, self._next(t)


class PowerLineModel:
    """A tower terminal on a line: micro-weather from its region (colder on the
    ridge), ice that accretes only in the icing window and melts above it, and the
    tension and sag that follow the ice."""

    INTERVAL: Final = 1800.0

    def __init__(self, dev: Device, rng: Rng, weather: Weather, start: float) -> None:
        self.rng, self.weather, self.region = rng, weather, dev.region
        icy = dev.region in ICING_REGIONS
        self.offset = -rng.uniform(0.5, 3.5) if icy else -rng.uniform(0.0, 0.8)  # ridge towers
        self.susceptibility = rng.uniform(0.5, 1.0)
        self.wind_factor = rng.uniform(0.7, 1.4)
        kv = float(dev.attributes["voltage_kv"])
        self.tension0 = {110.0: 18_000.0, 220.0: 30_000.0}.get(kv, 50_000.0) * rng.uniform(0.8, 1.3)
        self.sag0 = rng.uniform(8.0, 20.0)
        self.tilt0 = rng.uniform(-1.5, 1.5)
        self.heating = rng.uniform(5.0, 25.0)
        self.phase = float(rng.randint(0, 1799))
        self.start = start
        self.ice = 0.0
        self.last = start

    def first(self) -> float:
        return _align_up(self.start, self.INTERVAL, self.phase)

    def fire(self, t: float, full: bool) -> tuple[Metrics, States | None, float]:
        rng = self.rng
        temp, rh, wind = self.weather.air(self.region, t)
        temp = round(temp + self.offset + rng.gauss(0.0, 0.3), 1)
        rh = round(min(100.0, rh + rng.gauss(0.0, 2.0)), 1)
        wind = round(max(0.0, wind * self.wind_factor + rng.gauss(0.0, 0.3)), 1)
        hours = (t - self.last) / HOUR or self.INTERVAL / HOUR
        self.last = t
        if in_icing_window(temp, rh):
            self.ice += self.susceptibility * (0.08 + 0.04 * wind) * hours
        elif temp > ICING_T_MAX:
            self.ice -= (0.4 + 0.3 * (temp - ICING_T_MAX)) * hours
        else:
            self.ice -= 0.02 * hours  # sublimation in dry frost
        self.ice = ice = min(150.0, max(0.0, self.ice))
        hour = local_hour(t)
        load = 0.55 + 0.3 * math.sin(math.pi * (hour - 6.0) / 18.0) if hour >= 6.0 else 0.45
        sun = max(0.0, math.sin(math.pi * (hour - 7.0) / 12.0))
        conductor = temp if ice > 0.0 else temp + self.heating * load * load + 4.0 * sun
        m: Metrics = {
            "conductor_temp_c": round(conductor, 1),
            "ice_thickness_mm": round(ice, 1),
            "tension_n": round(self.tension0 * (1.0 + 0.03 * ice + 0.002 * wind * wind)),
            "windage_deg": round(max(-60.0, min(60.0, 1.5 * wind + rng.gauss(0.0, 1.0))), 1),
            "sag_m": round(max(0.1, self.sag0 * (1.0 + 0.004 * ice) + 0.03 * (conductor - 15.0)), 2),
            "wind_speed_ms": wind,
            "air_temp_c": temp,
            "humidity_pct": rh,
            "tilt_mm_per_m": round(self.tilt0 + rng.gauss(0.0, 0.05), 2),
            "battery_v": round(12.4 + 1.2 * sun + rng.gauss(0.0, 0.03), 2),
        }
        return m, None, t + self.INTERVAL


# Relative arrival rate of EV sessions by local hour (mean 1).
_ARRIVALS: Final = (
    0.3, 0.2, 0.15, 0.15, 0.2, 0.4, 0.8, 1.3, 1.6, 1.4, 1.2, 1.2,
    1.4, 1.2, 1.1, 1.2, 1.4, 1.7, 1.8, 1.6, 1.3, 1.0, 0.7, 0.45,
)
_ARRIVAL_MAX: Final = max(_ARRIVALS) * 24 / sum(_ARRIVALS)
_FAULT_P: Final = 0.004
_FAULTS: Final = ("GroundFailure", "HighTemperature", "OverCurrentFailure", "PowerMeterFailure",
                  "EVCommunicationError")


class _Connector:
    __slots__ = ("energy", "error", "k_energy", "k_error", "k_power", "k_soc", "k_status",
                 "next_change", "power", "soc", "soc_rate", "status")

    def __init__(self, i: int, energy: float) -> None:
        self.k_energy, self.k_power, self.k_soc = f"energy_wh.{i}", f"power_w.{i}", f"soc_pct.{i}"
        self.k_status, self.k_error = f"status.{i}", f"error_code.{i}"
        self.status = "Available"
        self.error = "NoError"
        self.energy = energy  # Wh register
        self.power = 0.0  # W
        self.soc = 0.0
        self.soc_rate = 0.0  # % per second while charging
        self.next_change = math.inf


class ChargerModel:
    """An OCPP charge point: each connector cycles Available → Preparing → Charging →
    Finishing → Available (sometimes Faulted) with sessions arriving by time of day;
    meter values every 15 minutes and a status notification on every change."""

    INTERVAL: Final = 900.0

    def __init__(self, dev: Device, rng: Rng, weather: Weather, start: float) -> None:
        self.rng = rng
        self.dc = dev.attributes["current_type"] == "DC"
        self.rated_w = float(dev.attributes["rated_power_kw"]) * 1000.0
        self.sessions_per_day = rng.uniform(3.0, 8.0) if self.dc else rng.uniform(0.8, 2.5)
        n = int(dev.attributes["connectors"])
        self.connectors = [_Connector(i, round(rng.uniform(0.0, 5e7))) for i in range(1, n + 1)]
        self.start = start
        self.last = start
        self.next_periodic = _align_up(start, self.INTERVAL, float(rng.randint(0, 899)))
        for c in self.connectors:
            c.next_change = self._arrival(start)

    def _arrival(self, t: float) -> float:
        """Next session arrival after t (thinning a Poisson process)."""
        rng = self.rng
        peak = self.sessions_per_day * _ARRIVAL_MAX / DAY
        while True:
            t += rng.expovariate(peak)
            if rng.random() * max(_ARRIVALS) < _ARRIVALS[int(local_hour(t))]:
                return float(math.ceil(t))

    def _later(self, t: float, seconds: float) -> float:
        return t + max(1.0, float(round(seconds)))

    def _transition(self, c: _Connector, t: float) -> None:
        rng = self.rng
        status = c.status
        if status in ("Available", "Preparing") and rng.chance(_FAULT_P):
            c.status, c.error, c.power = "Faulted", _FAULTS[rng.randint(0, len(_FAULTS) - 1)], 0.0
            c.next_change = self._later(t, rng.lognormal(2 * HOUR, 1.0))
        elif status == "Available":
            c.status = "Preparing"
            c.next_change = self._later(t, rng.uniform(30.0, 180.0))
        elif status == "Preparing":
            if rng.chance(0.08):  # driver gave up
                c.status = "Available"
                c.next_change = self._arrival(t)
                return
            capacity_wh = rng.uniform(40_000.0, 90_000.0)
            c.soc = rng.uniform(10.0, 50.0)
            target = rng.uniform(70.0, 95.0) if self.dc else rng.uniform(80.0, 100.0)
            share = rng.uniform(0.6, 0.95) if self.dc else rng.uniform(0.9, 1.0)
            c.power = round(self.rated_w * share, 1)
            seconds = (target - c.soc) / 100.0 * capacity_wh / c.power * HOUR
            c.soc_rate = c.power / capacity_wh * 100.0 / HOUR
            c.status = "Charging"
            c.next_change = self._later(t, min(seconds, 10 * HOUR))
        elif status == "Charging":
            c.status, c.power, c.soc_rate = "Finishing", 0.0, 0.0
            c.next_change = self._later(t, rng.uniform(60.0, 600.0) if self.dc
                                        else rng.uniform(300.0, 3600.0))
        else:  # Finishing, or Faulted repaired
            c.status, c.error = "Available", "NoError"
            c.next_change = self._arrival(t)

    def first(self) -> float:
        t = self.next_periodic
        for c in self.connectors:
            if c.next_change < t:
                t = c.next_change
        return t

    def fire(self, t: float, full: bool) -> tuple[Metrics, States | None, float]:
        dt = t - self.last
        self.last = t
        changed: list[_Connector] = []
        states: States = {}
        for c in self.connectors:
            if c.status == "Charging":
                c.energy += c.power * dt / HOUR
                c.soc = min(100.0, c.soc + c.soc_rate * dt)
            if c.next_change <= t:
                was_faulted = c.status == "Faulted"
                self._transition(c, t)
                changed.append(c)
                if c.status == "Faulted" or was_faulted:
                    states[c.k_error] = c.error
        periodic = t >= self.next_periodic
        if periodic:
            self.next_periodic += self.INTERVAL
        show = self.connectors if periodic or full else changed
        m: Metrics = {}
        dc = self.dc
        for c in show:
            m[c.k_energy] = float(int(c.energy))
            m[c.k_power] = c.power
            if dc and c.status == "Charging":
                m[c.k_soc] = round(c.soc, 1)
        for c in self.connectors if full else changed:
            states[c.k_status] = c.status
        if full:
            all_faulted = all(c.status == "Faulted" for c in self.connectors)
            states["status.0"] = "Faulted" if all_faulted else "Available"
        return m, states or None, self.first()


class DatacenterModel:
    """A site's facility and IT energy meters: IT load from racks in service, a PUE
    with a site base, a summer rise, a daily ripple and a slow drift; registers are
    integrals of the powers, so their ratio over any period is the period's PUE."""

    INTERVAL: Final = 900.0

    def __init__(self, dev: Device, rng: Rng, weather: Weather, start: float) -> None:
        self.rng = rng
        self.racks = float(dev.sizing["racks_built"])
        demo = dev.attributes["demo_project"] == "yes"
        self.pue_base = rng.uniform(1.10, 1.145) if demo else rng.uniform(1.15, 1.25)
        self.pue_drift = 0.0
        self.util = rng.uniform(0.55, 0.70)
        self.kw_per_rack = 2.5 * rng.uniform(0.6, 0.85)
        self.start = start
        self.last = start
        it_kw, fac_kw, _ = self._power(start)
        days = rng.uniform(200.0, 1500.0)
        self.it_kwh = round(it_kw * 24.0 * days, 1)
        self.fac_kwh = round(self.it_kwh * self.pue_base, 1)
        self.prev = (it_kw, fac_kw)

    def _power(self, t: float) -> tuple[float, float, float]:
        season = math.cos(2.0 * math.pi * (day_of_year(t) - 16.0) / 365.2425)
        daily = math.cos(2.0 * math.pi * (local_hour(t) - 15.0) / 24.0)
        pue = self.pue_base + self.pue_drift + 0.035 * (1.0 - season) / 2.0 + 0.008 * daily
        it_kw = self.racks * self.util * self.kw_per_rack * (1.0 + 0.03 * daily)
        return it_kw, it_kw * max(1.02, pue), pue

    def first(self) -> float:
        return _align_up(self.start, self.INTERVAL)

    def fire(self, t: float, full: bool) -> tuple[Metrics, States | None, float]:
        rng = self.rng
        steps = max(0.0, (t - self.last) / self.INTERVAL)
        if steps:
            # Utilisation creeps up (~+0.02 a month); PUE wanders back to the site's base.
            self.util = min(0.78, max(0.5, self.util + steps * 0.02 / 2880.0
                                      + rng.gauss(0.0, 2e-4) * math.sqrt(steps)))
            self.pue_drift = self.pue_drift * (1.0 - min(1.0, steps / 2880.0)) + rng.gauss(
                0.0, 3e-4) * math.sqrt(steps)
        it_kw, fac_kw, _ = self._power(t)
        hours = (t - self.last) / HOUR
        self.it_kwh += (self.prev[0] + it_kw) / 2.0 * hours
        self.fac_kwh += (self.prev[1] + fac_kw) / 2.0 * hours
        self.prev, self.last = (it_kw, fac_kw), t
        m: Metrics = {
            "facility_energy_kwh": round(self.fac_kwh, 1),
            "it_energy_kwh": round(self.it_kwh, 1),
            "facility_power_kw": round(fac_kw, 1),
            "it_power_kw": round(it_kw, 1),
            "racks_built": self.racks,
            "racks_in_service": float(round(self.racks * self.util)),
        }
        return m, None, t + self.INTERVAL


MODELS: Final[dict[str, type[ReservoirModel | PowerLineModel | ChargerModel | DatacenterModel]]] = {
    "reservoir": ReservoirModel,
    "power_line": PowerLineModel,
    "charger": ChargerModel,
    "datacenter": DatacenterModel,
}
