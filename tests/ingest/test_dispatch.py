"""The acceptance window on time: its edges, its reuse across messages that share a
reception time, and settings at the ends of the calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from adapters import ADAPTERS, DecodeError
from ingest.dispatch import Dispatcher

NOW = datetime(2024, 6, 15, 0, 10, tzinfo=UTC)
TOPIC = "gz/v1/power_line/pl-1/telemetry"
US = timedelta(microseconds=1)
EONS = timedelta(days=900_000_000)


def msg(ts: datetime) -> bytes:
    return orjson.dumps({"ts": ts.isoformat(), "metrics": {"conductor_temp_c": 20.5}})


def reason(d: Dispatcher, ts: datetime, at: datetime = NOW) -> str | None:
    try:
        d.decode(TOPIC, msg(ts), at)
    except DecodeError as exc:
        return exc.reason
    return None


def test_window_edges_are_inclusive() -> None:
    d = Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))
    assert reason(d, NOW + timedelta(minutes=5)) is None
    assert reason(d, NOW + timedelta(minutes=5) + US) == "future_timestamp"
    assert reason(d, NOW - timedelta(days=400)) is None
    assert reason(d, NOW - timedelta(days=400) - US) == "too_old"


def test_window_follows_the_reception_time() -> None:
    d = Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))
    ts = NOW + timedelta(minutes=10)
    assert reason(d, ts, NOW) == "future_timestamp"
    assert reason(d, ts, NOW) == "future_timestamp"  # the same reception time again
    assert reason(d, ts, NOW + timedelta(minutes=6)) is None  # a later one
    assert reason(d, ts, NOW) == "future_timestamp"  # and back


def test_offsets_compare_as_instants() -> None:
    d = Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))
    beijing = NOW.astimezone(datetime.fromisoformat("2024-01-01T00:00:00+08:00").tzinfo)
    assert reason(d, beijing + timedelta(minutes=5)) is None
    assert reason(d, beijing + timedelta(minutes=5, seconds=1)) == "future_timestamp"


@pytest.mark.parametrize(
    ("skew", "horizon", "ts", "expected"),
    [
        (timedelta(days=900_000_000), timedelta(days=400), datetime(9999, 1, 1, tzinfo=UTC), None),
        (timedelta(minutes=5), EONS, datetime(1, 1, 2, tzinfo=UTC), None),
        (timedelta(minutes=5), EONS, datetime(9999, 1, 1, tzinfo=UTC), "future_timestamp"),
    ],
)
def test_window_past_the_ends_of_the_calendar(
    skew: timedelta, horizon: timedelta, ts: datetime, expected: str | None
) -> None:
    d = Dispatcher(ADAPTERS, "gz", skew, horizon)
    assert reason(d, ts) == expected
