"""Migration 001: applied on the real PostgreSQL (plain variant), and its TimescaleDB
variant checked as text — every statement parses with PostgreSQL's own parser
(pglast) and does what production needs for every class table."""

from __future__ import annotations

import re

import asyncpg
import pglast
import pytest
from pglast import ast

from adapters import CLASSES
from ingest.migrate import (
    PLAIN,
    REWRITTEN,
    TIMESCALE,
    Migration,
    MigrationError,
    Server,
    choose_variant,
    conversion_sql,
    migrate,
    migrations,
    preloaded,
    recorded_variant,
    render,
    to_timescale,
)

READINGS = [c.table for c in CLASSES]


def m001() -> tuple[str, str]:
    m = next(m for m in migrations() if m.version == 1)
    return m.sql(timescale=False), m.sql(timescale=True)


def calls(sql: str, name: str) -> list[ast.FuncCall]:
    """The SELECT name(...) calls in a script."""
    out = []
    for raw in pglast.parse_sql(sql):
        s = raw.stmt
        if isinstance(s, ast.SelectStmt) and s.targetList:
            fn = s.targetList[0].val
            if isinstance(fn, ast.FuncCall) and fn.funcname[-1].sval == name:
                out.append(fn)
    return out


def first_arg(fn: ast.FuncCall) -> str:
    arg = fn.args[0]
    return str(arg.val.sval if isinstance(arg, ast.A_Const) else arg.arg.val.sval)


def named_args(fn: ast.FuncCall) -> dict[str, ast.Node]:
    return {a.name: a.arg for a in fn.args if isinstance(a, ast.NamedArgExpr)}


def caggs(sql: str) -> dict[str, ast.CreateTableAsStmt]:
    return {
        raw.stmt.into.rel.relname: raw.stmt
        for raw in pglast.parse_sql(sql)
        if isinstance(raw.stmt, ast.CreateTableAsStmt)
    }


def output_names(select: ast.SelectStmt) -> list[str]:
    return [t.name or t.val.fields[-1].sval for t in select.targetList]


def do_bodies(sql: str) -> list[str]:
    """The DO blocks of a script, each as its own statement text."""
    return [m[0] for m in re.finditer(r"^DO \$\$.*?^\$\$;", sql, re.S | re.M)]


def unique_indexes(sql: str) -> list[ast.IndexStmt]:
    """CREATE UNIQUE INDEX statements, at top level or inside DO guards."""
    texts = re.findall(r"CREATE UNIQUE INDEX[^;]*;", sql)
    return [pglast.parse_sql(t)[0].stmt for t in texts]


def test_every_statement_reruns_on_a_compressed_hypertable() -> None:
    """TimescaleDB 2.17 refuses CREATE INDEX (even IF NOT EXISTS, index present) and
    new compression settings on a hypertable with compressed chunks: both are guarded."""
    plain, timescale = m001()
    for sql in (plain, timescale):
        top = [raw.stmt for raw in pglast.parse_sql(sql)]
        assert not [s for s in top if isinstance(s, ast.IndexStmt) and s.relation.relname != "devices"
                    and s.relation.relname != "dead_letters"]  # fmt: skip
        assert not [s for s in top if isinstance(s, ast.AlterTableStmt) and s.relation.relname != "devices"]
        for body in do_bodies(sql):
            assert pglast.parse_plpgsql(body)  # valid PL/pgSQL
    guarded = {stmt.idxname for stmt in unique_indexes(plain)}
    assert guarded == {f"{t}_key" for t in READINGS} | {"state_events_key"}
    for body in do_bodies(plain):
        name = re.search(r"CREATE UNIQUE INDEX (\w+)", body)
        assert name and f"IF to_regclass('{name[1]}') IS NULL THEN" in body
    compress = [b for b in do_bodies(timescale) if "ALTER TABLE" in b]
    assert len(compress) == len(READINGS) + 1
    for body in compress:
        table = re.search(r"ALTER TABLE (\w+) SET", body)
        assert table and f"hypertable_name = '{table[1]}'" in body and "AND compression_enabled" in body


async def test_001_text_runs_twice_and_a_rewritten_checksum_is_taken(db_url: str) -> None:
    plain, _ = m001()
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
        await conn.execute(plain)  # the text itself re-runs
        former = next(iter(REWRITTEN[(1, PLAIN)]))
        await conn.execute("UPDATE schema_migrations SET checksum = $1 WHERE version = 1", former)
        assert await migrate(conn) == []
        m = next(m for m in migrations() if m.version == 1)
        recorded = await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = 1")
        assert recorded == m.checksum(False)
    finally:
        await conn.close()


def test_both_variants_parse() -> None:
    plain, timescale = m001()
    assert pglast.parse_sql(plain)
    assert pglast.parse_sql(timescale)
    assert pglast.parse_sql(render(timescale=True))


def test_timescale_hypertables_compression_and_retention() -> None:
    _, sql = m001()
    hyper = {first_arg(f): f for f in calls(sql, "create_hypertable")}
    assert set(hyper) == {*READINGS, "state_events"}
    for f in hyper.values():
        assert f.args[1].val.sval == "ts"  # partitioned by the reading's own time
        assert "if_not_exists" in named_args(f)
    assert {first_arg(f) for f in calls(sql, "add_compression_policy")} == {*READINGS, "state_events"}
    assert {first_arg(f) for f in calls(sql, "add_retention_policy")} == {*READINGS, "state_events"}
    for table in READINGS:
        block = re.search(rf"ALTER TABLE {table} SET \((.*?)\);", sql, re.S)
        assert block, table
        assert "timescaledb.compress," in block[1]
        assert "timescaledb.compress_segmentby = 'device_id, point'" in block[1]
        assert "timescaledb.compress_orderby = 'ts DESC'" in block[1]


def test_compression_covers_every_unique_key() -> None:
    """TimescaleDB refuses compression unless the columns of each unique index are
    in segmentby or orderby."""
    plain, sql = m001()
    uniques = {stmt.relation.relname: {p.name for p in stmt.indexParams} for stmt in unique_indexes(plain)}
    assert set(uniques) >= {*READINGS, "state_events"}
    for table in (*READINGS, "state_events"):
        block = re.search(rf"ALTER TABLE {table} SET \((.*?)\);", sql, re.S)
        assert block, table
        seg = re.search(r"compress_segmentby = '([^']*)'", block[1])
        order = re.search(r"compress_orderby = '([^']*)'", block[1])
        assert seg and order
        covered = {c.strip().split()[0] for c in f"{seg[1]},{order[1]}".split(",")}
        assert uniques[table] <= covered, (table, uniques[table] - covered)


def test_continuous_aggregates_cover_every_metric() -> None:
    plain, sql = m001()
    aggs = caggs(sql)
    policies = {first_arg(f): named_args(f) for f in calls(sql, "add_continuous_aggregate_policy")}
    for cls in CLASSES:
        for period in ("hourly", "daily"):
            name = f"{cls.table}_{period}"
            stmt = aggs[name]
            assert stmt.objtype == pglast.enums.ObjectType.OBJECT_MATVIEW
            opts = {f"{o.defnamespace}.{o.defname}" for o in stmt.into.options}
            assert "timescaledb.continuous" in opts
            assert stmt.into.skipData  # WITH NO DATA: allowed inside the migration's transaction
            query = stmt.query
            assert query.fromClause[0].relname == cls.table
            bucket = query.targetList[0].val
            assert bucket.funcname[-1].sval == "time_bucket"
            cols = set(output_names(query))
            for m in cls.metrics:
                assert f"{m.name}_min" in cols and f"{m.name}_max" in cols
                assert m.register or f"{m.name}_avg" in cols
            assert {"start_offset", "end_offset", "schedule_interval"} <= set(policies[name])
    # the plain views have the same names and columns, so queries work on both
    views = {
        raw.stmt.view.relname: raw.stmt.query
        for raw in pglast.parse_sql(plain)
        if isinstance(raw.stmt, ast.ViewStmt)
    }
    for name, stmt in aggs.items():
        assert output_names(views[name]) == output_names(stmt.query), name


async def test_plain_migration_applies_once_and_matches_the_adapters(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        applied = await migrate(conn, use_timescale=False)
        assert applied[0] == "001_core"
        assert await migrate(conn, use_timescale=False) == []
        rows = await conn.fetch("SELECT version, variant FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == sorted(r["version"] for r in rows)
        assert {r["variant"] for r in rows} == {"plain"}
        for cls in CLASSES:
            cols = {
                r["column_name"]: r["data_type"]
                for r in await conn.fetch(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1",
                    cls.table,
                )
            }
            for m in cls.metrics:
                assert cols.get(m.name) == "double precision", (cls.table, m.name)
            key = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = $1", f"{cls.table}_key"
            )
            assert "UNIQUE" in key and "(device_id, point, ts)" in key
            for period in ("hourly", "daily"):  # the views answer queries
                await conn.fetch(f"SELECT * FROM {cls.table}_{period} LIMIT 1")
    finally:
        await conn.close()


def test_the_variant_belongs_to_the_database() -> None:
    ready, absent = Server(True, True), Server(False, False)
    assert choose_variant(None, None, ready) == TIMESCALE
    assert choose_variant(None, None, absent) == PLAIN
    assert choose_variant(None, PLAIN, ready) == PLAIN
    # installed later: a plain database stays plain, and says how to convert it
    assert choose_variant(PLAIN, None, ready) == PLAIN
    with pytest.raises(MigrationError, match="--to-timescale"):
        choose_variant(PLAIN, TIMESCALE, ready)
    with pytest.raises(MigrationError, match="cannot be migrated as plain"):
        choose_variant(TIMESCALE, PLAIN, ready)
    with pytest.raises(MigrationError, match="does not have the extension"):
        choose_variant(None, TIMESCALE, absent)


def test_installed_but_not_preloaded_says_what_to_set() -> None:
    for recorded in (None, TIMESCALE):
        with pytest.raises(MigrationError, match="shared_preload_libraries = 'timescaledb'"):
            choose_variant(recorded, None, Server(True, False))
    assert preloaded("timescaledb")
    assert preloaded("pg_stat_statements, timescaledb")
    assert preloaded("'$libdir/timescaledb'".strip("'"))
    assert not preloaded("") and not preloaded("pg_stat_statements")
    assert not preloaded("timescaledb_toolkit")


async def test_an_error_that_closes_the_connection_is_not_masked(db_url: str) -> None:
    """A migration whose server session dies (as PostgreSQL does on a FATAL such as
    an extension that must be preloaded) raises that error, not the failed unlock's."""
    fatal = Migration(1, "dies", "SELECT pg_terminate_backend(pg_backend_pid());", "", "")
    conn = await asyncpg.connect(db_url)
    try:
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)) as caught:
            await migrate(conn, use_timescale=False, shipped=[fatal])
        assert "administrator command" in str(caught.value), caught.value
    finally:
        await conn.close()


async def test_a_plain_database_keeps_its_variant(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
        assert await recorded_variant(conn) == PLAIN
        assert await migrate(conn) == []  # detects nothing anew: the database says plain
        with pytest.raises(MigrationError, match="--to-timescale"):
            await migrate(conn, use_timescale=True)
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", 0x1E57_0001)  # released
    finally:
        await conn.close()


def test_conversion_sql_is_exact() -> None:
    """`ingest migrate --to-timescale` as text: the plain views dropped before the
    aggregates of their names are made, every hypertable made with its rows, every
    policy, and 004's record of the history as late; each part re-runs."""
    applied = migrations()
    sql = conversion_sql(applied)
    stmts = [raw.stmt for raw in pglast.parse_sql(sql)]
    drops = [i for i, s in enumerate(stmts) if isinstance(s, ast.DropStmt)]
    dropped = {s.objects[0][-1].sval for s in stmts if isinstance(s, ast.DropStmt)}
    assert dropped == {name for name in caggs(sql)}  # every view gives way to its aggregate
    view = pglast.enums.ObjectType.OBJECT_VIEW
    assert all(stmts[i].removeType == view and stmts[i].missing_ok for i in drops)
    first_cagg = next(i for i, s in enumerate(stmts) if isinstance(s, ast.CreateTableAsStmt))
    assert max(drops) < first_cagg
    hyper = calls(sql, "create_hypertable")
    snapshots = {"indicator_snapshots", "fleet_snapshots"}
    assert {first_arg(f) for f in hyper} == {*READINGS, "state_events", *snapshots}
    for f in hyper:
        args = named_args(f)
        assert "if_not_exists" in args and args["migrate_data"].val.boolval
    assert {first_arg(f) for f in calls(sql, "add_continuous_aggregate_policy")} == set(caggs(sql))
    assert "INSERT INTO late_ranges" in sql  # the history, for the refresh job
    for body in do_bodies(sql):
        assert pglast.parse_plpgsql(body)


async def test_to_timescale_refuses_without_the_extension(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        with pytest.raises(MigrationError, match="no migrations yet"):
            await to_timescale(conn)
        await migrate(conn, use_timescale=False)
        with pytest.raises(MigrationError, match="does not have the extension"):
            await to_timescale(conn)
        assert await recorded_variant(conn) == PLAIN  # untouched
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", 0x1E57_0001)  # released
    finally:
        await conn.close()
