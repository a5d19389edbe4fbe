"""Dispatch: topic → adapter → decoded message, with the acceptance window on time.
Pure: the caller passes the reception time. A topic of the wrong depth decodes to
`bad_topic`, a device id outside the rule (ingest.topics) to `bad_device_id`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from adapters import ADAPTERS, Adapter, Decoded, DecodeError, Topic
from ingest import topics
from ingest.config import Config


class Dispatcher:
    def __init__(
        self,
        adapters: Iterable[Adapter],
        prefix: str,
        future_skew: timedelta,
        horizon: timedelta,
    ) -> None:
        self.prefix = prefix
        self.future_skew = future_skew
        self.horizon = horizon
        self._by_key = {(a.device_class.name, a.channel): a for a in adapters}
        self._classes = {name for name, _ in self._by_key}
        # Devices publish on the same few topics again and again: remember what a
        # valid topic resolved to (bounded; cleared when full).
        self._routes: dict[str, tuple[Topic, Adapter]] = {}
        # The acceptance window of the last reception time (messages of one read
        # share it): (received_at, latest ts accepted, earliest ts accepted).
        self._window: tuple[datetime, datetime, datetime] | None = None

    @classmethod
    def for_config(cls, cfg: Config) -> Dispatcher:
        """The dispatcher of the shipped adapters with the configured acceptance window."""
        return cls(
            ADAPTERS,
            cfg.mqtt.prefix,
            timedelta(seconds=cfg.accept.future_skew_s),
            timedelta(days=cfg.accept.horizon_days),
        )

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(self._classes)

    def _route(self, topic: str) -> tuple[Topic, Adapter]:
        t = topics.parse(topic, self.prefix)
        adapter = self._by_key.get((t.device_class, t.channel))
        if adapter is None:
            if t.device_class not in self._classes:
                raise DecodeError("unknown_class", f"no device class {t.device_class!r}")
            raise DecodeError("unknown_channel", f"{t.device_class} has no channel {t.channel!r}")
        if len(self._routes) >= 500_000:
            self._routes.clear()
        self._routes[topic] = (t, adapter)
        return t, adapter

    def _window_at(self, received_at: datetime) -> tuple[datetime, datetime, datetime]:
        try:
            latest = received_at + self.future_skew
        except OverflowError:
            latest = datetime.max.replace(tzinfo=UTC)
        try:
            earliest = received_at - self.horizon
        except OverflowError:
            earliest = datetime.min.replace(tzinfo=UTC)
        return received_at, latest, earliest

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> Decoded:
        """Decode one message or raise DecodeError with the reason."""
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        t, adapter = route
        decoded = adapter.decode(t, payload, received_at)
        if decoded.status is None:
            window = self._window
            if window is None or window[0] is not received_at:
                window = self._window = self._window_at(received_at)
            ts = decoded.ts
            if ts > window[1]:
                raise DecodeError(
                    "future_timestamp", f"ts {ts.isoformat()} is ahead of reception {received_at.isoformat()}"
                )
            if ts < window[2]:
                raise DecodeError(
                    "too_old", f"ts {ts.isoformat()} is older than the {self.horizon.days}-day horizon"
                )
        return decoded
