"""The status page at `/`, rendered by a real headless Chromium (Debian's package):
it shows the figures the progress API returns, with progress bars against both
targets, per region, the service's health and a rejection; at 1,280 px it needs no
horizontal scrolling (measured in the page over the DevTools protocol); the
screenshot is checked."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
import tempfile
import urllib.request
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp

from ingest.status_page import fmt
from tests.mqttclient import publish
from tests.ops.live import fed_service
from tests.services import Broker, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
GREEN, BLUE, HEADER = (0x2E, 0x9E, 0x4F), (0x2F, 0x7E, 0xD8), (0x12, 0x32, 0x4F)


def chromium(*args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="ingest-chromium-") as profile:
        r = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


async def page_width(url: str, width: int) -> tuple[int, int]:
    """(scroll width, viewport width) of `url` in Chromium at `width` px, read from
    the loaded page over the DevTools protocol."""
    port = free_port()
    # Chromium's helpers may still write to the profile while it exits: ignore that at cleanup.
    with tempfile.TemporaryDirectory(prefix="ingest-chromium-", ignore_cleanup_errors=True) as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
            f"--window-size={width},900", url, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http:
                targets: list[dict[str, Any]] = []
                for _ in range(200):  # Chromium takes a moment to listen
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                            targets = [t for t in await r.json() if t["type"] == "page"]
                        if targets:
                            break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    expr = (f"location.href === {json.dumps(url)} && document.readyState === 'complete' ? "
                            "[document.documentElement.scrollWidth, window.innerWidth] : null")  # fmt: skip
                    for n in range(1, 200):
                        params = {"expression": expr, "returnByValue": True}
                        await ws.send_json({"id": n, "method": "Runtime.evaluate", "params": params})
                        while (msg := await ws.receive_json()).get("id") != n:
                            pass
                        value = msg["result"]["result"].get("value")
                        if value:
                            return int(value[0]), int(value[1])
                        await asyncio.sleep(0.1)
            raise AssertionError("the page did not load")
        finally:
            proc.terminate()
            await proc.wait()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


class Cells(HTMLParser):
    """Per indicator row: the data-value, the visible value text and the bars'
    data-progress, from the DOM as Chromium rendered it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}
        self.row: str | None = None
        self.in_value = False
        self.health = False
        self.dead_letters = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-indicator"):
            self.row = a["data-indicator"]
            self.rows[self.row] = {"progress": [], "text": ""}
        elif self.row and tag == "td" and "data-value" in a:
            self.rows[self.row]["value"] = a["data-value"]
            self.in_value = True
        elif self.row and "data-progress" in a:
            self.rows[self.row]["progress"].append(a["data-progress"])
        elif tag == "section" and a.get("id") == "health":
            self.health = True
        elif tag == "tr" and a.get("data-dead-letter"):
            self.dead_letters += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.in_value = False
        elif tag == "tr":
            self.row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.row and self.in_value:
            self.rows[self.row]["text"] += data


def png_pixels(data: bytes) -> tuple[int, int, Counter[tuple[int, int, int]]]:
    """Width, height and a colour histogram of an 8-bit RGB(A) PNG, as Chromium writes them."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and ctype in (2, 6) and interlace == 0
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, colours = bytearray(stride), Counter[tuple[int, int, int]]()
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, ul = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1:
                line[i] = (line[i] + left) & 255
            elif f == 2:
                line[i] = (line[i] + up) & 255
            elif f == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif f == 4:
                p = left + up - ul
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else ul)) & 255
        colours.update(tuple(line[i : i + 3]) for i in range(0, stride, bpp))  # type: ignore[misc]
        prev = line
    return w, h, colours


async def test_status_page_in_chromium_shows_the_api_figures(mqtt_broker: Broker, db_url: str) -> None:
    async with fed_service(mqtt_broker, db_url) as svc:
        base = f"http://127.0.0.1:{svc.http_port}"
        done = svc.pipeline.committed_messages
        bad = ("gz/v1/reservoir/res-z9/telemetry", b'{"ts": "2024-01-01T00:00:00Z", "metrics": {"lvl": 1}}')
        await asyncio.to_thread(publish, mqtt_broker.port, [bad])
        await asyncio.wait_for(svc.pipeline.wait_committed(done + 1), 20)
        for region in ("520000", "guian"):
            api = await asyncio.to_thread(get_json, f"{base}/api/v1/indicators?region={region}")
            dom = await asyncio.to_thread(chromium, "--dump-dom", f"{base}/?region={region}")
            page = Cells()
            page.feed(dom)
            assert page.health, "no health section"
            assert set(page.rows) == {i["key"] for i in api["indicators"]}
            for ind in api["indicators"]:
                row = page.rows[ind["key"]]
                value = ind["value"]
                assert row["value"] == ("" if value is None else repr(float(value))), ind["key"]
                assert row["text"].startswith(fmt(value, ind["unit"])), (ind["key"], row["text"])
                # One bar per target year that has a target, carrying the API's progress.
                want = [p for y, p in sorted(ind["progress"].items()) if ind["targets"][y] is not None]
                got = [float(p) if p else None for p in row["progress"]]
                assert len(got) == len(want), ind["key"]
                for g, w in zip(got, want, strict=True):
                    assert (g is None and w is None) or abs(g - w) < 1e-6, (ind["key"], g, w)
            text = " ".join(page.text)
            assert "mqtt connected" in text and "last rollup" in text and "last commit age s" in text
            assert "True" not in text and "False" not in text  # booleans as words
            assert page.dead_letters >= 1 and "res-z9" in text and "unknown_metric" in text
            assert "lvl" in text and "in the last hour" in text
            assert '<meta http-equiv="refresh"' in dom
        # The fleet's data-centre figures reach the page (not only empty rows).
        guian = {i["key"]: i for i in api["indicators"]}
        assert guian["dc_standard_racks"]["value"] == 9000
        assert guian["dc_rack_utilization"]["progress"]["2024"] > 1  # 66.7 % of racks in service

        scroll, viewport = await page_width(f"{base}/", 1280)
        assert scroll <= viewport, f"the page is {scroll} px wide at {viewport} px: it scrolls sideways"
        with tempfile.TemporaryDirectory(prefix="ingest-shot-") as d:
            shot = Path(d) / "status.png"
            await asyncio.to_thread(
                chromium, f"--screenshot={shot}", "--window-size=1280,1400", f"{base}/?region=guian"
            )
            w, h, colours = png_pixels(shot.read_bytes())
    assert (w, h) == (1280, 1400)
    assert len(colours) > 50, "a blank screenshot"
    assert colours[HEADER] > 1280 * 30, "the header band did not render"
    assert colours[GREEN] > 500, "no green bar for the met utilisation target"
    assert colours[GREEN] + colours[BLUE] > 1000
