"""The acknowledgement window: `multiple=True` must never cover a tag whose batch is
not committed, whatever order the writers commit in."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from ingest.sources.amqp import AckWindow, topic_of


def test_in_order() -> None:
    w = AckWindow()
    assert w.add([1, 2, 3])
    assert w.upto == 3


def test_a_gap_holds_the_window() -> None:
    w = AckWindow()
    assert not w.add([3, 4])  # batch 1-2 not committed yet
    assert w.upto == 0 and w.held == 2
    assert w.add([1, 2])
    assert w.upto == 4 and w.held == 0


@given(st.integers(1, 300), st.integers(1, 50), st.randoms())
def test_any_commit_order(n: int, batch: int, rnd: random.Random) -> None:
    batches = [list(range(i, min(i + batch, n + 1))) for i in range(1, n + 1, batch)]
    rnd.shuffle(batches)
    w = AckWindow()
    committed: set[int] = set()
    for b in batches:
        w.add(b)
        committed.update(b)
        # everything at or below upto is committed, and upto is as high as it can be
        assert all(t in committed for t in range(1, w.upto + 1))
        assert w.upto + 1 not in committed
    assert w.upto == n and w.held == 0


def test_topics_come_back() -> None:
    # RabbitMQ 3.10's MQTT plugin turns '/' into '.' and keeps a '.' (seen on 3.10.8:
    # tests/ingest/sources/test_amqp_devices.py publishes a dotted id through it)
    assert topic_of("gz.v1.charger.ch-00001.telemetry", "gz") == "gz/v1/charger/ch-00001/telemetry"
    assert topic_of("gz.v1.charger.ch.1.telemetry", "gz") == "gz/v1/charger/ch.1/telemetry"
    assert topic_of("gz.v1.reservoir.a.b.c:d.sl651", "gz") == "gz/v1/reservoir/a.b.c:d/sl651"
    assert topic_of("gz.prod.v1.charger.ch.1.status", "gz/prod") == "gz/prod/v1/charger/ch.1/status"
    # a release that swaps the two
    assert topic_of("gz.v1.charger.ch/1.telemetry", "gz") == "gz/v1/charger/ch.1/telemetry"
    # other shapes keep their separators, for the dead letter to name them
    assert topic_of("gz.v2.charger.ch-1.telemetry", "gz") == "gz/v2/charger/ch-1/telemetry"
    assert topic_of("gz.v1.charger", "gz") == "gz/v1/charger"
    assert topic_of("other.v1.charger.ch-1.telemetry", "gz") == "other/v1/charger/ch-1/telemetry"
