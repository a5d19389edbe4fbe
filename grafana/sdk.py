"""Small helpers over the grafana-foundation-sdk builders: datasource references,
a PostgreSQL query target (the SDK ships no builder for it), thresholds, and the
time-bucketed per-device SQL that reads raw rows for fine intervals and the
hourly continuous aggregate for coarse ones."""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pmodel

PROM = dm.DataSourceRef(type_val="prometheus", uid="prometheus")
PG = dm.DataSourceRef(type_val="grafana-postgresql-datasource", uid="timescaledb")

# Below this interval a panel reads raw rows; at or above it, the hourly aggregate
# (a TimescaleDB continuous aggregate in production, a view on plain PostgreSQL).
HOURLY_MS = 3_600_000


class SqlDataquery(cogvariants.Dataquery):
    def __init__(self, ref_id: str, sql: str, fmt: str) -> None:
        self.ref_id = ref_id
        self.sql = sql
        self.fmt = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": PG.to_json(),
            "editorMode": "code",
            "format": self.fmt,
            "rawQuery": True,
            "rawSql": self.sql,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw-SQL target for the PostgreSQL datasource (format: time_series or table)."""

    def __init__(self, sql: str, fmt: str = "time_series", ref_id: str = "A") -> None:
        self._q = SqlDataquery(ref_id, " ".join(sql.split()), fmt)

    def build(self) -> cogvariants.Dataquery:
        return self._q


def prom(expr: str, legend: str = "", ref_id: str = "A", instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(PROM)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant().format(pmodel.PromQueryFormat.TABLE)
    return q


def thresholds(base: str, *steps: tuple[float, str]) -> dm.ThresholdsConfig:
    return dm.ThresholdsConfig(
        mode=dm.ThresholdsMode.ABSOLUTE,
        steps=[dm.Threshold(None, base), *(dm.Threshold(v, c) for v, c in steps)],
    )


class Thresholds(cogbuilder.Builder[dm.ThresholdsConfig]):
    def __init__(self, base: str, *steps: tuple[float, str]) -> None:
        self._t = thresholds(base, *steps)

    def build(self) -> dm.ThresholdsConfig:
        return self._t


def bucketed(
    cls: str,
    raw: str,
    agg: str,
    *,
    metric: str = "r.device_id",
    where: str = "r.point = ''",
    present: str = "",
    join_devices: bool = True,
    group: str = "",
    outer: str = "",
) -> str:
    """Per-device time series of class `cls`, bucketed by Grafana's interval.

    `raw` aggregates columns of `readings_<cls>` (alias r, e.g. "max(r.level_m)"),
    `agg` the matching columns of `readings_<cls>_hourly` (alias r, e.g.
    "max(r.level_m_max)"). Both branches are planned, one is pruned by its constant
    condition. `present` names a column that must not be null (in the aggregate,
    its `_max`). `outer` wraps the union: it receives it as `b(time, metric, value)`.
    """
    by = f"1, 2, {group}" if group else "1, 2"
    raw_where = f"{where} AND r.{present} IS NOT NULL" if present else where
    agg_where = f"{where} AND r.{present}_max IS NOT NULL" if present else where
    dev = "JOIN devices d ON d.device_id = r.device_id AND d.region IN ($region)" if join_devices else ""
    union = f"""
        SELECT $__timeGroupAlias(r.ts, $__interval), {metric} AS metric, {raw} AS value
        FROM readings_{cls} r {dev}
        WHERE $__timeFilter(r.ts) AND {raw_where} AND $__interval_ms < {HOURLY_MS}
        GROUP BY {by}
        UNION ALL
        SELECT $__timeGroupAlias(r.bucket, $__interval), {metric} AS metric, {agg} AS value
        FROM readings_{cls}_hourly r {dev}
        WHERE $__timeFilter(r.bucket) AND {agg_where} AND $__interval_ms >= {HOURLY_MS}
        GROUP BY {by}
    """
    if outer:
        return outer.replace("{union}", f"({union}) b")
    return union + " ORDER BY 1, 2"
