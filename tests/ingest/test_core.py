"""The pipeline's pure core, driven by the in-memory source: batches by size, the
tokens handed back after a commit (to the source and epoch they came from, each once),
backpressure, and what becomes a dead letter instead of a redelivery loop."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from adapters import ADAPTERS, Decoded, Topic
from ingest.core import Core
from ingest.dispatch import Dispatcher
from ingest.registry import RegistryCache
from ingest.sources.memory import MemorySource

NOW = datetime(2024, 6, 15, 0, 10, tzinfo=UTC)


def dispatcher(adapters: Any = ADAPTERS) -> Dispatcher:
    return Dispatcher(adapters, "gz", timedelta(minutes=5), timedelta(days=400))


def msg(device: str, i: int, cls: str = "power_line") -> tuple[str, bytes]:
    ts = (NOW - timedelta(seconds=i + 1)).isoformat()
    metric = {"power_line": "air_temp_c", "reservoir": "battery_v"}[cls]
    return f"gz/v1/{cls}/{device}/telemetry", orjson.dumps({"ts": ts, "metrics": {metric: 12.5}})


class Intake:
    """The core as a source sees it (the driver's on_messages, without the loop)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def on_messages(self, source: Any, epoch: Any, messages: Any) -> None:
        self.core.intake(source, epoch, messages, NOW, 0.0)

    def on_rejected(self, *args: Any) -> None:
        raise AssertionError("not used here")


def core(max_rows: int = 3, max_pending: int = 2, adapters: Any = ADAPTERS) -> Core:
    return Core(dispatcher(adapters), RegistryCache(timedelta(seconds=30)), max_rows, max_pending)


def test_tokens_go_back_to_their_source_and_epoch_after_commit() -> None:
    c = core(max_rows=3, max_pending=10)
    a, b = MemorySource(Intake(c)), MemorySource(Intake(c))
    a.feed([(*msg("l1", 0), "a0"), (*msg("l1", 1), "a1")], epoch=1)
    b.feed([(*msg("l2", 0), "b0"), (*msg("l2", 1), "b1")], epoch=7)  # closes the first batch
    a.feed([(*msg("l1", 2), "a2")], epoch=2)  # a new connection of `a`
    assert len(c.ready) == 1 and c.open is not None and c.open.messages == 2
    c.close()
    assert c.pending_messages == 5
    while (batch := c.take()) is not None:
        acks, _ = c.committed(batch)
        for src, epoch, tokens in acks:
            src.ack(epoch, tokens)
    assert a.acked == [(1, "a0"), (1, "a1"), (2, "a2")]
    assert b.acked == [(7, "b0"), (7, "b1")]
    assert c.committed_messages == 5 and c.pending_messages == 0 and c.idle


def test_intake_pauses_when_batches_wait_and_resumes_after_a_commit() -> None:
    c = core(max_rows=1, max_pending=2)
    src = MemorySource(Intake(c))
    src.feed([(*msg("l1", 0), 0)])
    assert not c.should_pause()
    src.feed([(*msg("l1", 1), 1)])
    assert c.should_pause()
    assert not c.should_pause()  # once: the driver pauses the sources once
    batch = c.take()
    assert batch is not None
    _, resume = c.committed(batch)
    assert resume and not c.paused


def test_an_adapter_bug_is_a_dead_letter_not_a_redelivery() -> None:
    def broken(topic: Topic, payload: bytes, received_at: datetime) -> Decoded:
        raise ZeroDivisionError("division by zero")

    adapters = [dataclasses.replace(a, decode=broken) if a.channel == "telemetry" else a for a in ADAPTERS]
    c = core(adapters=adapters)
    src = MemorySource(Intake(c))
    src.feed([(*msg("l1", 0), 0)])
    batch = c.open
    assert batch is not None
    assert batch.dead[0][3:] == ("internal_error", "ZeroDivisionError: division by zero")
    c.close()
    taken = c.take()
    assert taken is batch
    acks, _ = c.committed(taken)
    assert acks == [(src, 0, [0])]


def test_a_device_known_under_another_class_is_refused() -> None:
    c = core(max_rows=100)
    c.registry.classes["dev-1"] = "reservoir"
    src = MemorySource(Intake(c))
    src.feed([(*msg("dev-1", 0, "power_line"), 0), (*msg("dev-2", 0, "reservoir"), 1)])
    src.feed([(*msg("dev-2", 1, "power_line"), 2)])  # dev-2 is a reservoir in this batch
    batch = c.open
    assert batch is not None
    assert [(d[1], d[3]) for d in batch.dead] == [
        ("gz/v1/power_line/dev-1/telemetry", "class_mismatch"),
        ("gz/v1/power_line/dev-2/telemetry", "class_mismatch"),
    ]
    assert "registered as reservoir; this message is power_line" in batch.dead[0][4]
    assert set(batch.devices) == {"dev-2"} and "power_line" not in batch.rows
    assert batch.tokens(src, 0) == [0, 1, 2]  # refused ones are acknowledged too


def test_an_unknown_device_is_kept_until_the_database_says_its_class() -> None:
    c = core(max_rows=100)
    src = MemorySource(Intake(c))
    src.feed([(*msg("dev-3", 0), 0), (*msg("dev-3", 1), 1), (*msg("dev-4", 0), 2)])
    batch = c.open
    assert batch is not None
    assert set(batch.unverified) == {"dev-3", "dev-4"} and len(batch.unverified["dev-3"]) == 2
    batch.reject_device("dev-3", "charger")  # what the writer does when the database disagrees
    assert [r[0] for r in batch.rows["power_line"]] == ["dev-4"]
    assert [d[3] for d in batch.dead] == ["class_mismatch", "class_mismatch"]
    assert batch.accepted["power_line"] == 1 and set(batch.devices) == {"dev-4"}
