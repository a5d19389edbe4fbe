"""The rollup runner: refreshes the aggregates over late readings
(ingest/aggregates.py), gathers the facts, computes, stores a snapshot and keeps
the latest result in memory for the API and the Prometheus collector. Runs on
demand and periodically."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ingest import aggregates
from ingest.config import RollupConfig
from ingest.indicators import alarms, store
from ingest.indicators.catalogue import Catalogue
from ingest.indicators.compute import Params, RollupResult, rollup

log = logging.getLogger(__name__)


class Rollup:
    def __init__(self, cfg: RollupConfig, catalogue: Catalogue) -> None:
        self.cfg = cfg
        self.catalogue = catalogue
        self.latest: RollupResult | None = None
        self.last_success: float | None = None  # unix time
        self.failures = 0
        self._lock = asyncio.Lock()

    async def compute(self, conn: Any, now: datetime | None = None) -> RollupResult:
        """Compute the figures as of `now` without storing them."""
        now = now or datetime.now(UTC)
        started = time.perf_counter()
        facts = await store.device_facts(conn, self.cfg, now)
        timescale = await store.uses_timescale(conn)
        start = now - timedelta(days=self.cfg.pue_window_days)
        energies = await store.energies(conn, start, now, buckets=timescale)
        params = Params(now=now, window_days=self.cfg.pue_window_days, pue_category=self.cfg.pue_category)
        result = rollup(self.catalogue, facts, energies, params)
        result.alarms = alarms.count(await store.latest_values(conn, self.cfg, now))
        result.duration_s = time.perf_counter() - started
        return result

    async def current(self, pool: Any) -> RollupResult:
        """The latest rollup; before the first one has finished, figures computed now
        and not stored (a reader never writes)."""
        if self.latest is not None:
            return self.latest
        async with pool.acquire() as conn:
            return await self.compute(conn)

    async def run_once(self, pool: Any, now: datetime | None = None) -> RollupResult:
        """Bring late readings into the aggregates, compute, store the snapshot, and
        make it the latest."""
        async with self._lock, pool.acquire() as conn:
            try:
                await aggregates.refresh_late(conn, await store.uses_timescale(conn))
            except asyncpg.PostgresError as exc:
                # The ranges stay recorded; the next round tries again.
                log.warning("refreshing the aggregates for late readings failed: %s", exc)
            result = await self.compute(conn, now)
            await store.save(conn, result)
        self.latest = result
        self.last_success = time.time()
        log.info("rollup done in %.3fs", result.duration_s)
        return result

    async def run_forever(self, pool: Any) -> None:
        while True:
            try:
                await self.run_once(pool)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The next round retries; the API keeps serving the last good result.
                self.failures += 1
                log.exception("rollup failed; retrying in %.0fs", self.cfg.interval_s)
            await asyncio.sleep(self.cfg.interval_s)
