"""The one-command demo end to end: it starts a broker of its own, the service and a
simulated fleet, serves the status page and /metrics with growing counts, and stops
cleanly, leaving no broker behind."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import free_port

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()


def accepted(metrics: str) -> float:
    return sum(
        float(m)
        for m in re.findall(r'^ingest_messages_total\{[^}]*outcome="accepted"[^}]*\} (\S+)$', metrics, re.M)
    )


async def test_demo_runs_and_stops_cleanly(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["INGEST_DATABASE_URL"] = db_url
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ingest.cli",
            "demo",
            "--duration",
            "15",
            "--http-port",
            str(port),
            "--workdir",
            str(tmp_path),
            "--speed",
            "120",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        first = -1.0
        while time.monotonic() < deadline:
            try:
                _, metrics = await asyncio.to_thread(get, f"{base}/metrics")
                first = accepted(metrics)
                if first > 0:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.2)
        assert first > 0, "no accepted messages in /metrics"
        later = first
        deadline = time.monotonic() + 10  # the counts grow with each commit; a loaded machine is slower
        while later <= first and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            _, metrics = await asyncio.to_thread(get, f"{base}/metrics")
            later = accepted(metrics)
        assert later > first, "accepted messages in /metrics did not grow"
        status, page = await asyncio.to_thread(get, f"{base}/")
        assert status == 200 and "<html" in page.lower()
        out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "status page" in text and "Bearer" in text
    assert f"export INGEST_DATABASE_URL={db_url}" in text
    assert re.search(r"demo stopped: \d+ messages committed", text)
    conf = str(tmp_path / "mosquitto" / "mosquitto.conf")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert conf not in ps, "the demo's broker is still running"
