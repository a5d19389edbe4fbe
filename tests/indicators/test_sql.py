"""Migration 002 as text (the TimescaleDB variant cannot run here) and on plain PostgreSQL."""

from __future__ import annotations

import re

import asyncpg
import pglast
from pglast import ast
from pglast.visitors import Visitor

from adapters import CLASSES
from ingest.indicators import store
from ingest.migrate import migrate, migrations

DATACENTER = next(c for c in CLASSES if c.name == "datacenter")
READINGS_COLUMNS = {"device_id", "ts", "point", "seq", *DATACENTER.columns}


class Columns(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_ColumnRef(self, ancestors: object, node: ast.ColumnRef) -> None:
        self.names.add(node.fields[-1].sval)


def m002() -> tuple[str, str]:
    m = next(m for m in migrations() if m.version == 2)
    return m.sql(timescale=False), m.sql(timescale=True)


def test_every_statement_parses() -> None:
    plain, timescale = m002()
    queries = (store.BUCKETS, store.SAMPLE_SEGMENTS, store.DEVICES, store.RACKS, store.AUTOMATED)
    for text in (plain, timescale, *queries):
        assert pglast.parse_sql(text)


def test_register_cagg_reads_real_columns() -> None:
    _, timescale = m002()
    stmt = next(
        s.stmt
        for s in pglast.parse_sql(timescale)
        if isinstance(s.stmt, ast.CreateTableAsStmt)
        and s.stmt.into.rel.relname == "readings_datacenter_registers_hourly"
    )
    query = stmt.query
    assert query.fromClause[0].relname == "readings_datacenter"
    cols = Columns()
    cols(query)
    assert cols.names <= READINGS_COLUMNS, cols.names - READINGS_COLUMNS
    # what the rollup selects from the aggregate is what the aggregate defines
    defined = {t.name or t.val.fields[-1].sval for t in query.targetList}
    bucket_cols = Columns()
    bucket_cols(pglast.parse_sql(store.BUCKETS)[0].stmt)
    assert bucket_cols.names <= defined, bucket_cols.names - defined
    assert "timescaledb.continuous" in timescale
    assert re.search(r"create_hypertable\('indicator_snapshots'", timescale)
    # the plain twin (005) has the aggregate's name and columns, in order, and so
    # has the sample path's query: the rollup reads either the same way
    m005 = next(m for m in migrations() if m.version == 5)
    view = next(
        s.stmt for s in pglast.parse_sql(m005.sql(timescale=False)) if isinstance(s.stmt, ast.ViewStmt)
    )
    assert view.view.relname == "readings_datacenter_registers_hourly"
    names = [t.name or t.val.fields[-1].sval for t in query.targetList]
    assert [t.name or t.val.fields[-1].sval for t in view.query.targetList] == names
    samples = pglast.parse_sql(store.SAMPLE_SEGMENTS)[0].stmt
    assert {t.name or t.val.fields[-1].sval for t in samples.targetList} == set(names) - {"n"}


async def test_plain_migration_applies_twice(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
        assert await migrate(conn, use_timescale=False) == []
        nullable = await conn.fetchval(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'devices' AND column_name = 'first_seen'"
        )
        assert nullable == "YES"
        assert await store.uses_timescale(conn) is False
    finally:
        await conn.close()
