"""The HTTP surface against raw sockets: a malformed request is one log line and a
count, not a traceback; no software version in the `Server` header."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from ingest import config
from ingest.appctx import AppContext
from ingest.http import make_app
from tests.services import free_port

PROBES = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS to the plain port
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


async def exchange(port: int, data: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(data)
    await w.drain()
    try:
        return await asyncio.wait_for(r.read(4096), 10)
    finally:
        w.close()


async def test_malformed_requests_are_one_line_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    runner = web.AppRunner(make_app(AppContext(config.Config(), registry)), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    caplog.set_level(logging.WARNING)
    try:
        for probe in PROBES:
            answer = await exchange(port, probe)
            assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0], (probe, answer)
            assert b"\r\nServer: ingest\r\n" in answer and b"aiohttp" not in answer, answer
        ok = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200") and b"\r\nServer: ingest\r\n" in ok
        counted = registry.get_sample_value("ingest_http_malformed_requests_total")
    finally:
        await runner.cleanup()
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert counted == len(PROBES)
    assert len(records) == len(PROBES)  # aiohttp's debug line for a first bad method too: one warning each
    assert all(r.exc_info is None and r.getMessage().startswith("malformed HTTP request from 127.0.0.1: ")
               and "\n" not in r.getMessage() for r in records)  # fmt: skip
