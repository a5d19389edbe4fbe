"""docs/devices.md against the declarations: its generated tables and examples are
what the classes give, every example is accepted by today's decoders, every metric
row carries its unit and range, and every dead-letter reason is explained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters import CLASSES, DeviceClass, docs
from ingest.deadletters import ALL_REASONS
from tests.adapters.golden import dispatcher

TEXT = docs.DOC.read_text(encoding="utf-8")


def test_generated_sections_are_fresh() -> None:
    assert docs.main(["--check"]) == 0, "run python -m adapters.docs --write"
    assert docs.render(TEXT) == TEXT


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_every_metric_is_documented_with_unit_and_range(cls: DeviceClass) -> None:
    for m in cls.metrics:
        row = f"| `{m.name}` | {m.unit} | {docs._num(m.minimum)} … {docs._num(m.maximum)} |"
        assert row in TEXT, row
    assert f"### {cls.name}" in TEXT


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_the_class_example_is_accepted(cls: DeviceClass) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    dev = docs.DEVICE[cls.name]
    topic = f"gz/v1/{cls.name}/{dev}/telemetry"
    assert f"-t {topic} -m '" in TEXT
    d = dispatcher().decode(topic, docs.example(cls, now.isoformat()), now)
    assert d.device_id == dev and d.ts == now
    assert all(v is not None for v in d.rows[0][1])  # every metric carried


def test_the_native_examples_are_accepted() -> None:
    sl = dispatcher().decode("gz/v1/reservoir/0052010001/sl651", bytes.fromhex(docs.SL651_EXAMPLE),
                             datetime(2024, 6, 15, 0, 10, tzinfo=UTC))  # fmt: skip
    assert sl.device_class == "reservoir" and sl.rows
    at = datetime(2024, 6, 15, 0, 5, tzinfo=UTC) + timedelta(seconds=30)
    oc = dispatcher().decode("gz/v1/charger/CP-GY-0001/ocpp", docs.OCPP_EXAMPLE.encode(), at)
    assert oc.device_class == "charger" and oc.rows


def test_every_reason_is_explained() -> None:
    for reason in ALL_REASONS:
        assert f"`{reason}`" in TEXT, reason
