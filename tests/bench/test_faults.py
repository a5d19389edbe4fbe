"""A smoke run of the fault suite (python -m bench.faults): short streams through a
worker SIGKILLed three times and a PostgreSQL stopped for a moment; every message the
broker acknowledged is stored once. The full suite is a command, not a test."""

from __future__ import annotations

import pytest

from bench.faults import run_scenario

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scenario", ["sigkill", "net_cut"])
async def test_nothing_acknowledged_is_lost_or_stored_twice(scenario: str) -> None:
    o = await run_scenario(scenario, n=2_000, rate=1_000, outage_scale=0.05)
    assert o.acknowledged == o.published == 2_000
    assert o.stored == o.acknowledged
    assert o.duplicated == 0 and o.lost == 0
