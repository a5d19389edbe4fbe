"""The dashboards: the committed JSON is what the source generates, the provisioning
points at it, and every SQL panel query runs against PostgreSQL with Grafana's macros
substituted and returns rows, at a fine interval (raw rows) and a coarse one (the
hourly aggregates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import yaml

from grafana import generate
from tests.ops import grafana_queries as gq
from tests.ops.live import fed_service
from tests.services import Broker

BOARDS = {"plan-progress", "reservoirs", "power-lines", "chargers", "datacenters", "ingestion"}


def test_committed_json_matches_the_source() -> None:
    rendered = generate.render()
    assert {n.removesuffix(".json") for n in rendered} == BOARDS
    on_disk = {p.name: p.read_text() for p in gq.DASHBOARDS.glob("*.json")}
    assert on_disk == rendered, "run: python -m grafana.generate"
    assert generate.main(["--check"]) == 0


def test_provisioning_matches_the_dashboards() -> None:
    prov = gq.ROOT / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "datasources.yml").read_text())["datasources"]
    uids = {d["uid"]: d for d in ds}
    assert uids["prometheus"]["type"] == "prometheus"
    assert uids["timescaledb"]["type"] == "grafana-postgresql-datasource"
    assert uids["timescaledb"]["jsonData"]["timescaledb"] is True
    used = {(t.kind, t.board) for t in gq.targets()}
    assert {b for k, b in used if k == "sql"} == BOARDS - {"plan-progress", "ingestion"}
    assert {b for k, b in used if k == "prometheus"} >= {"plan-progress", "ingestion"}
    providers = yaml.safe_load((prov / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/gz-infra"


async def test_every_sql_panel_returns_rows(mqtt_broker: Broker, db_url: str) -> None:
    sql_targets = [t for t in gq.targets() if t.kind == "sql"]
    assert len(sql_targets) >= 15
    async with fed_service(mqtt_broker, db_url):
        end = datetime.now(UTC) + timedelta(minutes=1)
        start = end - timedelta(hours=6)
        conn = await asyncpg.connect(db_url)
        try:
            regions: dict[str, list[str]] = {}
            for board, kind, query in gq.variables():
                if kind == "grafana-postgresql-datasource":
                    rows = await conn.fetch(query)
                    assert rows, f"{board}: variable query returned nothing: {query}"
                    regions[board] = [r[0] for r in rows]
            failures = []
            for t in sql_targets:
                for interval in ("1m", "1h"):
                    text = gq.sql(t.text, start, end, interval, regions[t.board])
                    try:
                        rows = await conn.fetch(text)
                    except asyncpg.PostgresError as exc:
                        failures.append(f"{t.board} / {t.panel} @{interval}: {exc}")
                        continue
                    if not rows:
                        failures.append(f"{t.board} / {t.panel} @{interval}: no rows")
                    elif t.fmt == "time_series":
                        assert "time" in rows[0], f"{t.board} / {t.panel}: no time column"
        finally:
            await conn.close()
    assert not failures, "\n".join(failures)
