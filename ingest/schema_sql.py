"""The SQL of the per-class readings tables and their hourly and daily rollups,
generated from the `DeviceClass` declarations, as `schemas/` is.

Both variants come from one description: a TimescaleDB hypertable with compression,
retention and continuous aggregates, and on plain PostgreSQL ordinary views with the
aggregates' names and columns. A metric carries the migration that added it
(`Metric.since`): migration 001 has the metrics of version 1, and a later version
is a generated `NNN_metrics*.sql` that adds the columns and rebuilds the rollups.

`python -m ingest.schema_sql --write` regenerates the files in `ingest/sql/`;
`--check` exits non-zero when a committed file differs from what the declarations
give (tests/ingest/test_schema_sql.py runs it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from adapters import CLASSES, DeviceClass, Metric

TIMEZONE = "Asia/Shanghai"  # the daily buckets are Beijing days
CHUNK = "1 day"  # readings hypertables' chunk interval
COMPRESS_AFTER = "7 days"
RETAIN = "1095 days"


@dataclass(frozen=True, slots=True)
class Rollup:
    """One aggregate period of every class: its bucket and its refresh policy."""

    suffix: str
    width: timedelta
    start_offset: timedelta  # the policy refreshes [now - start_offset, now - end_offset]
    end_offset: timedelta
    schedule: timedelta  # ... this often
    local: bool  # buckets at Beijing midnight (TIMEZONE) rather than UTC

    def timescale_bucket(self) -> str:
        if self.local:
            return f"time_bucket({interval(self.width)}, ts, '{TIMEZONE}')"
        return f"time_bucket({interval(self.width)}, ts)"

    def plain_bucket(self) -> str:
        if self.local:
            return (
                f"(date_bin({interval(self.width)}, ts AT TIME ZONE '{TIMEZONE}', "
                f"TIMESTAMP '2000-01-01') AT TIME ZONE '{TIMEZONE}')"
            )
        return f"date_bin({interval(self.width)}, ts, TIMESTAMPTZ '2000-01-01 00:00+00')"


_H, _D = timedelta(hours=1), timedelta(days=1)
HOURLY = Rollup("hourly", _H, 3 * _D, _H, timedelta(minutes=30), local=False)
DAILY = Rollup("daily", _D, 7 * _D, _D, _D, local=True)
ROLLUPS = (HOURLY, DAILY)


def interval(d: timedelta) -> str:
    """An INTERVAL literal in the units the migrations have always used."""
    s = int(d.total_seconds())
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s % n == 0:
            k = s // n
            return f"INTERVAL '{k} {unit}{'s' if k != 1 else ''}'"
    return f"INTERVAL '{s} seconds'"


def metrics_at(cls: DeviceClass, version: int) -> tuple[Metric, ...]:
    return tuple(m for m in cls.metrics if m.since <= version)


def _column(m: Metric, last: bool) -> str:
    return f"    {m.name:<23}double precision{'' if last else ','}  -- {m.unit}, {m.description}"


def create_table(cls: DeviceClass, version: int) -> str:
    ms = metrics_at(cls, version)
    cols = "\n".join(_column(m, i == len(ms) - 1) for i, m in enumerate(ms))
    return f"""CREATE TABLE IF NOT EXISTS {cls.table} (
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    point     text NOT NULL DEFAULT '',   -- '' for the device, else one of several sensors
    seq       bigint,
{cols}
);
-- The idempotency key: the same device, point and time written twice is one row.
{unique_index(f"{cls.table}_key", cls.table, "device_id, point, ts")}"""


def unique_index(name: str, table: str, columns: str) -> str:
    """CREATE UNIQUE INDEX that re-runs on a compressed hypertable: TimescaleDB
    (2.17) refuses CREATE INDEX there even with IF NOT EXISTS and the index present."""
    return f"""DO $$
BEGIN
    IF to_regclass('{name}') IS NULL THEN
        CREATE UNIQUE INDEX {name} ON {table} ({columns});
    END IF;
END
$$;"""


def compression(table: str, segmentby: str, orderby: str) -> str:
    """Compression settings, set once: changing them is refused while compressed
    chunks exist, so a re-run leaves a hypertable that has them alone. The 2.x
    `compress` names (2.18 deprecates them for `columnstore`, 3.0 drops them) are the
    ones both 2.17 and 2.2x accept."""
    return f"""DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_schema = current_schema() AND hypertable_name = '{table}'
                     AND compression_enabled) THEN
        ALTER TABLE {table} SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = '{segmentby}',
            timescaledb.compress_orderby = '{orderby}'
        );
    END IF;
END
$$;"""


def aggregates(m: Metric) -> tuple[str, ...]:
    """A register's average means nothing; its min and max bound the energy."""
    return ("min", "max") if m.register else ("avg", "min", "max")


def rollup_select(cls: DeviceClass, rollup: Rollup, version: int, timescale: bool) -> str:
    bucket = rollup.timescale_bucket() if timescale else rollup.plain_bucket()
    lines = [f"    {bucket} AS bucket", "    device_id", "    point", "    count(*) AS n"]
    for m in metrics_at(cls, version):
        lines += [f"    {f}({m.name}) AS {m.name}_{f}" for f in aggregates(m)]
    return "SELECT\n" + ",\n".join(lines) + f"\nFROM {cls.table}\nGROUP BY 1, 2, 3"


def view_name(cls: DeviceClass, rollup: Rollup) -> str:
    return f"{cls.table}_{rollup.suffix}"


def continuous_aggregate(cls: DeviceClass, rollup: Rollup, version: int) -> str:
    name = view_name(cls, rollup)
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {name}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
{rollup_select(cls, rollup, version, timescale=True)}
WITH NO DATA;
SELECT add_continuous_aggregate_policy('{name}',
    start_offset => {interval(rollup.start_offset)}, end_offset => {interval(rollup.end_offset)},
    schedule_interval => {interval(rollup.schedule)}, if_not_exists => TRUE);"""


def plain_view(cls: DeviceClass, rollup: Rollup, version: int) -> str:
    return (
        f"CREATE OR REPLACE VIEW {view_name(cls, rollup)} AS\n"
        f"{rollup_select(cls, rollup, version, timescale=False)};"
    )


def hypertable(table: str, chunk: str, segmentby: str, orderby: str, compress_after: str) -> str:
    create = f"create_hypertable('{table}', 'ts', chunk_time_interval => INTERVAL '{chunk}'"
    create += ", if_not_exists => TRUE)"
    return f"""SELECT {create};
{compression(table, segmentby, orderby)}
SELECT add_compression_policy('{table}', INTERVAL '{compress_after}', if_not_exists => TRUE);
SELECT add_retention_policy('{table}', INTERVAL '{RETAIN}', if_not_exists => TRUE);"""


CORE_HEAD = f"""\
-- 001 core: device registry, per-class readings, state events, dead letters.
-- Portable PostgreSQL (15+). The TimescaleDB part is 001_core.timescale.sql,
-- applied instead of 001_core.plain.sql when the extension is available.

CREATE TABLE IF NOT EXISTS devices (
    device_id   text PRIMARY KEY,
    class       text NOT NULL,
    first_seen  timestamptz NOT NULL,          -- first accepted message (received)
    last_seen   timestamptz NOT NULL,          -- last accepted message (received)
    last_ts     timestamptz,                   -- newest reading's own timestamp
    region      text,                          -- from provisioning or the meta hint
    site        text,
    name        text,
    provisioned boolean NOT NULL DEFAULT false, -- provisioned attributes win over hints
    meta        jsonb NOT NULL DEFAULT '{{}}',   -- latest hints from payloads
    status      text CHECK (status IN ('online', 'offline')),
    status_at   timestamptz,
    automated_at timestamptz                   -- first automatic report (not manual entry)
);
CREATE INDEX IF NOT EXISTS devices_class_region ON devices (class, region);

CREATE TABLE IF NOT EXISTS state_events (
    device_id text NOT NULL,
    class     text NOT NULL,
    ts        timestamptz NOT NULL,
    point     text NOT NULL DEFAULT '',
    name      text NOT NULL,
    value     text NOT NULL
);
{unique_index("state_events_key", "state_events", "device_id, point, name, ts")}

CREATE TABLE IF NOT EXISTS dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason, received_at);
"""

CORE_TIMESCALE_HEAD = """\
-- 001 core, TimescaleDB: hypertables, compression (columnstore) policy, hourly and
-- daily continuous aggregates, retention. Uses the TimescaleDB 2.x API (2.11+).
"""

CORE_PLAIN_HEAD = """\
-- 001 core, plain PostgreSQL: hourly and daily rollups as ordinary views with the
-- same names and columns as the TimescaleDB continuous aggregates.
"""

_STATE_HYPERTABLE = "create_hypertable('state_events', 'ts', chunk_time_interval => INTERVAL '7 days'"
STATE_EVENTS_TIMESCALE = f"""\
SELECT {_STATE_HYPERTABLE}, if_not_exists => TRUE);
-- TimescaleDB requires the columns of a unique index in segmentby or orderby.
{compression("state_events", "device_id, name", "ts DESC, point")}
SELECT add_compression_policy('state_events', INTERVAL '14 days', if_not_exists => TRUE);
SELECT add_retention_policy('state_events', INTERVAL '1095 days', if_not_exists => TRUE);
"""


def core(classes: Sequence[DeviceClass] = CLASSES) -> dict[str, str]:
    """Migration 001: its common, TimescaleDB and plain parts."""
    common = CORE_HEAD + "".join(f"\n{create_table(c, 1)}\n" for c in classes)
    ts_blocks = []
    for c in classes:
        block = hypertable(c.table, CHUNK, "device_id, point", "ts DESC", COMPRESS_AFTER)
        for r in ROLLUPS:
            block += "\n\n" + continuous_aggregate(c, r, 1)
        ts_blocks.append(block + "\n")
    timescale = CORE_TIMESCALE_HEAD + "".join(f"\n{b}" for b in ts_blocks) + "\n" + STATE_EVENTS_TIMESCALE
    plain = CORE_PLAIN_HEAD + "".join(f"\n{plain_view(c, r, 1)}\n" for c in classes for r in ROLLUPS)
    return {"001_core.sql": common, "001_core.timescale.sql": timescale, "001_core.plain.sql": plain}


# 002's hourly aggregate of the energy registers (the rollup's PUE), written by hand.
REGISTERS = ("readings_datacenter", "readings_datacenter_registers_hourly")


def refreshed_aggregates(classes: Sequence[DeviceClass] = CLASSES) -> dict[str, list[tuple[str, Rollup]]]:
    """Every continuous aggregate of each readings hypertable, with its period."""
    out = {c.table: [(view_name(c, r), r) for r in ROLLUPS] for c in classes}
    out.setdefault(REGISTERS[0], []).append((REGISTERS[1], HOURLY))
    return out


def metrics_migration(version: int, classes: Sequence[DeviceClass] = CLASSES) -> dict[str, str]:
    """Migration `version` for the metrics declared `since=version`: their columns,
    and every rollup of their classes rebuilt with them. A continuous aggregate's
    query cannot be altered, so it is dropped and made again, empty; its
    hypertable's history is then recorded as late, and the refresh job
    (ingest/aggregates.py) fills it outside the migration's transaction."""
    name = f"{version:03d}_metrics"
    changed = [c for c in classes if any(m.since == version for m in c.metrics)]
    head = f"-- {version:03d} metrics, generated by ingest/schema_sql.py from the class declarations"
    common = [f"{head}: the columns of the metrics declared since={version}."]
    plain = [f"{head}, plain PostgreSQL: the rollup views rebuilt with the new columns."]
    timescale = [f"{head}, TimescaleDB: the continuous aggregates rebuilt with the new columns."]
    for c in changed:
        common.append("")
        for m in c.metrics:
            if m.since == version:
                common.append(
                    f"ALTER TABLE {c.table} ADD COLUMN IF NOT EXISTS {m.name} double precision;"
                    f"  -- {m.unit}, {m.description}"
                )
        for r in ROLLUPS:
            # CREATE OR REPLACE VIEW may only add columns at the end
            plain.append(f"\nDROP VIEW IF EXISTS {view_name(c, r)};\n{plain_view(c, r, version)}")
            drop = f"DROP MATERIALIZED VIEW IF EXISTS {view_name(c, r)};"
            timescale.append(f"\n{drop}\n{continuous_aggregate(c, r, version)}")
        timescale.append(
            f"\nINSERT INTO late_ranges (hypertable, lo, hi)\n"
            f"SELECT '{c.table}', min(ts), max(ts) FROM {c.table} HAVING min(ts) IS NOT NULL;"
        )
    return {
        f"{name}.sql": "\n".join(common) + "\n",
        f"{name}.plain.sql": "\n".join(plain) + "\n",
        f"{name}.timescale.sql": "\n".join(timescale) + "\n",
    }


def generate(classes: Sequence[DeviceClass] = CLASSES) -> dict[str, str]:
    """Every generated file of ingest/sql/, by name: 001, and one migration for each
    later version that metrics were declared with."""
    out = core(classes)
    for version in sorted({m.since for c in classes for m in c.metrics} - {1}):
        out.update(metrics_migration(version, classes))
    return out


def default_dir() -> Path:
    return Path(__file__).resolve().parent / "sql"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.schema_sql", description=(__doc__ or "").split("\n\n")[0]
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the SQL files")
    mode.add_argument("--check", action="store_true", help="fail if a file is stale")
    parser.add_argument("--dir", type=Path, default=default_dir(), help="default: %(default)s")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path: Path = args.dir / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.write:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            stale.append(name)
    if stale:
        print(f"stale or missing in {args.dir}: {', '.join(stale)}", file=sys.stderr)
        print("run: python -m ingest.schema_sql --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
