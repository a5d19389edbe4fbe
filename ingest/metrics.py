"""The service's own Prometheus metrics, on an explicit registry.

Labels are bounded: class (the four classes and "unknown"), outcome, reason (the
closed REASONS set), table. Nothing here is per device.
"""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PCounter

from adapters import CLASSES, REASONS

CLASS_NAMES = frozenset(c.name for c in CLASSES)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = PCounter(
            "ingest_messages_total",
            "MQTT messages handled, by device class and outcome (accepted or rejected)",
            ["class", "outcome"],
            registry=r,
        )
        self.dead_letters = PCounter(
            "ingest_dead_letters_total",
            "Messages stored as dead letters, by reason",
            ["reason"],
            registry=r,
        )
        self.rows = PCounter("ingest_rows_written_total", "Rows committed, by table", ["table"], registry=r)
        self.dedup_batches = PCounter(
            "ingest_dedup_batches_total",
            "Batches that met an already stored key and were rewritten with deduplication",
            registry=r,
        )
        self.db_errors = PCounter(
            "ingest_db_errors_total",
            "Failed commit attempts, by kind (transient: retried; refused: salvaged row by row)",
            ["kind"],
            registry=r,
        )
        self.batch_messages = Histogram(
            "ingest_batch_messages",
            "Messages per committed batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "ingest_commit_seconds",
            "Time to commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.lag_seconds = Histogram(
            "ingest_receive_to_commit_seconds",
            "From reception of a batch's first message to its commit",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.queue_batches = Gauge("ingest_queue_batches", "Batches waiting for the writer", registry=r)
        self.pending_messages = Gauge(
            "ingest_pending_messages",
            "Messages received but not yet committed and acknowledged",
            registry=r,
        )
        self.paused = Gauge("ingest_intake_paused", "1 while intake is paused for backpressure", registry=r)
        self.mqtt_connected = Gauge(
            "ingest_mqtt_connected", "1 while connected to the MQTT broker", registry=r
        )
        self.mqtt_reconnects = PCounter(
            "ingest_mqtt_connects_total",
            "MQTT connections made (first and reconnects)",
            registry=r,
        )
        self.db_connected = Gauge(
            "ingest_db_connected", "1 while the writer holds a database connection", registry=r
        )
        self.last_commit = Gauge(
            "ingest_last_commit_timestamp_seconds",
            "Unix time of the last successful commit",
            registry=r,
        )
        # Zero-initialise the bounded label sets so that rates exist from the start.
        for cls in CLASS_NAMES:
            for outcome in ("accepted", "rejected"):
                self.messages.labels(cls, outcome)
        for reason in REASONS:
            self.dead_letters.labels(reason)

    def count(self, accepted: Counter[str], rejected: Counter[tuple[str, str]]) -> None:
        for cls, n in accepted.items():
            self.messages.labels(cls, "accepted").inc(n)
        for (cls, reason), n in rejected.items():
            self.messages.labels(cls if cls in CLASS_NAMES else "unknown", "rejected").inc(n)
            self.dead_letters.labels(reason).inc(n)
