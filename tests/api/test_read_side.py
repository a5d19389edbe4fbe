"""The read side is one flow: a GET never writes; the report lives in ingest.report,
not in a handler module; `http`, `api/` and `status_page` import each other in one
direction only, at the top of the module."""

from __future__ import annotations

import ast
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from ingest import config
from ingest.appctx import AppContext
from ingest.http import make_app
from ingest.indicators import Rollup, load_catalogue
from ingest.migrate import migrate
from tests.services import free_port

PKG = Path(__file__).resolve().parents[2] / "ingest"
READ_SIDE = [PKG / "http.py", PKG / "appctx.py", PKG / "status_page.py", PKG / "report.py",
             *sorted((PKG / "api").glob("*.py"))]  # fmt: skip


def imports(path: Path) -> tuple[set[str], list[str]]:
    """(modules imported at the top, imports inside functions)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module)
            top.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            top.update(a.name for a in node.names)
    local = [
        ast.unparse(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
        if isinstance(n, ast.Import | ast.ImportFrom)
    ]
    return top, local


def test_no_hidden_imports_and_one_direction() -> None:
    for path in READ_SIDE:
        top, local = imports(path)
        assert not local, f"{path.name} imports inside a function: {local}"
        if path.name != "http.py":
            assert "ingest.http" not in top, f"{path.name} imports ingest.http"
        if path.parent.name == "api" or path.name == "status_page.py":
            borrowed = {m for m in top if m.startswith("ingest.api.indicators") or m == "ingest.status_page"}
            assert path.name == "__init__.py" or not borrowed, f"{path.name} borrows {borrowed}"


async def test_a_get_before_the_first_rollup_stores_nothing(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    cfg = config.load(env={"INGEST_DATABASE_URL": db_url})
    pool = await asyncpg.create_pool(db_url, min_size=0, max_size=2)
    rollup = Rollup(cfg.rollup, load_catalogue())
    runner = web.AppRunner(make_app(AppContext(cfg, CollectorRegistry(), pool=pool, rollup=rollup)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/api/v1/indicators", "/api/v1/indicators/smart_chargers", "/"):
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    assert r.status == 200, path
        async with pool.acquire() as c:
            assert await c.fetchval("SELECT count(*) FROM indicator_snapshots") == 0
        assert rollup.latest is None
    finally:
        await runner.cleanup()
        await pool.close()
