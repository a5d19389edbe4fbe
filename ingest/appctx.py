"""What the HTTP handlers share: the settings, the metrics registry, the read pool,
the rollup and the worker's health. Its own module so that `http`, `api/` and
`status_page` import it without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from ingest.config import Config
from ingest.indicators.runner import Rollup


@dataclass
class AppContext:
    cfg: Config
    registry: CollectorRegistry
    pool: Any = None  # asyncpg pool for read queries (asyncpg ships no types)
    rollup: Rollup | None = None  # the plan's figures for the progress API and the status page
    health: Callable[[], dict[str, Any]] = field(default=lambda: {"status": "ok"})


CTX: web.AppKey[AppContext] = web.AppKey("ctx")
