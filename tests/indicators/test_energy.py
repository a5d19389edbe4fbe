"""PUE from register series: sums of energies, resets, coverage. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.indicators.energy import (
    Segment,
    coverage,
    mean_of_ratios,
    meter_energy,
    register_energy,
    total,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def series(points: list[tuple[float, float]], step_s: int = 900) -> list[Segment]:
    return [Segment.sample(T0 + timedelta(seconds=i * step_s), f, it) for i, (f, it) in enumerate(points)]


def test_energy_weighted_not_mean_of_ratios() -> None:
    e = register_energy(series([(0, 0), (1300, 1000), (2000, 1400)]))
    assert e.pue == pytest.approx(2000 / 1400)
    assert mean_of_ratios([(1300, 1000), (700, 400)]) == pytest.approx(1.525)
    assert e.pue != pytest.approx(1.525)


def test_reset_and_backward_step_are_not_energy() -> None:
    e = register_energy(series([(100, 80), (200, 160), (5, 4), (55, 44), (50, 44), (70, 60)]))
    # counted: +100/+80, +50/+40, +20/+16; reset (200->5) and backward step (55->50) skipped
    assert (e.facility_kwh, e.it_kwh) == (170, 136)
    assert e.resets == 2
    assert e.covered_s == 3 * 900


def test_it_outgrowing_facility_is_rejected() -> None:
    e = register_energy(series([(0, 0), (10, 20), (30, 30)]))
    assert (e.facility_kwh, e.it_kwh, e.rejected) == (20, 10, 1)


def test_bucket_with_a_reset_inside_is_left_out() -> None:
    h = timedelta(hours=1)
    good = Segment(T0, T0 + h, 0, 100, 0, 80, 0, 100, 0, 80)
    reset = Segment(T0 + 2 * h, T0 + 3 * h, 150, 20, 120, 10, 5, 160, 3, 125)
    e = register_energy([good, reset])
    assert (e.facility_kwh, e.it_kwh) == (150, 120)  # the bucket + the step between buckets
    assert e.resets == 1


def test_coverage_and_sum_of_meters() -> None:
    a = register_energy(series([(0, 0), (96 * 10, 96 * 8)], step_s=86400))
    b = register_energy(series([(0, 0), (10, 5)], step_s=3600))
    both = total([a, b])
    assert both.meters == 2
    assert coverage(a, 86400) == 1.0
    assert coverage(both, 86400) == pytest.approx((86400 + 3600) / (2 * 86400))
    assert both.pue == pytest.approx((960 + 10) / (768 + 5))


steps = st.lists(
    st.tuples(st.floats(0, 1000), st.floats(0, 0.99)), min_size=1, max_size=40
)  # (facility step, IT share of it; 1.0 would sit on the float edge of "IT > facility")


@given(steps, st.integers(0, 39))
def test_a_reset_costs_only_its_own_interval(raw: list[tuple[float, float]], at: int) -> None:
    f, i, pts = 1000.0, 500.0, [(1000.0, 500.0)]
    for df, share in raw:
        f, i = f + df, i + df * share
        pts.append((f, i))
    clean = register_energy(series(pts))
    assert clean.resets == 0
    assert clean.facility_kwh == pytest.approx(f - 1000.0)
    at = at % len(raw) + 1
    reset = pts[:at] + [(pf - 1000.0 + 1e-3, pi - 500.0 + 1e-3) for pf, pi in pts[at:]]
    if reset[at][0] >= reset[at - 1][0] and reset[at][1] >= reset[at - 1][1]:
        return  # the "reset" did not go backwards
    e = register_energy(series(reset))
    lost_f = pts[at][0] - pts[at - 1][0]
    assert e.resets == 1
    assert e.facility_kwh == pytest.approx(clean.facility_kwh - lost_f, abs=1e-6)
    assert e.facility_kwh >= 0 and e.it_kwh <= e.facility_kwh + 1e-9


def test_alarm_thresholds() -> None:
    from ingest.indicators.alarms import Latest, count, in_alarm

    hot = Latest(
        "a", "power_line", "520500", conductor_temp_c=80.0, ice_thickness_mm=10.0, design_ice_mm=20.0
    )
    assert in_alarm(hot) == ["ice_50pct_design", "conductor_temp_70c", "conductor_temp_80c"]
    assert in_alarm(Latest("b", "reservoir", "unknown", level_m=10.0, flood_limit_level_m=10.0)) == []
    assert in_alarm(Latest("c", "power_line", "unknown", ice_thickness_mm=5.0, design_ice_mm=None)) == []
    counts = count([Latest("d", "charger", "unknown", faulted=True)])
    assert counts[("faulted", "charger", "unknown")] == counts[("faulted", "charger", "520000")] == 1


def test_the_rule_groups_samples_in_hourly_buckets() -> None:
    """A backward step inside an hour leaves that hour out (one reset); IT outgrowing
    facility inside an hour rejects it; the steps between hours count."""
    m = timedelta(minutes=15)
    samples = [
        (T0, 100.0, 80.0), (T0 + m, 110.0, 88.0), (T0 + 2 * m, 5.0, 4.0), (T0 + 3 * m, 20.0, 16.0),  # reset
        (T0 + 4 * m, 30.0, 20.0), (T0 + 5 * m, 40.0, 40.0),  # IT outgrows facility in hour 2
        (T0 + 8 * m, 60.0, 50.0), (T0 + 9 * m, 70.0, 58.0),  # a clean hour 3
    ]  # fmt: skip
    e = meter_energy(samples)
    assert (e.resets, e.rejected) == (1, 1)
    # a dip that stays between an hour's first and last is not seen: the hour counts
    dip = meter_energy([(T0, 0.0, 0.0), (T0 + m, 10.0, 8.0), (T0 + 2 * m, 5.0, 4.0), (T0 + 3 * m, 20, 16)])
    assert (dip.facility_kwh, dip.it_kwh, dip.resets) == (20, 16, 0)
    # steps between hours: 20->30 / 16->20 and 40->60 / 40->50; hour 3: 60->70 / 50->58
    assert (e.facility_kwh, e.it_kwh) == (10 + 20 + 10, 4 + 10 + 8)
    assert e.covered_s == 900 + 2700 + 900
