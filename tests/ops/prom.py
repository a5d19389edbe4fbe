"""A real Prometheus (Debian's package) on a free loopback port, scraping given
targets every second and evaluating the project's rule files."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.localservices import terminate
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@dataclass
class Prometheus:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; returns the JSON body, also for 4xx answers (bad_data)."""
        q = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{q}", timeout=10) as r:
                body: dict[str, Any] = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def log(self) -> str:
        p = self.dir / "prometheus.log"
        return p.read_text(errors="replace") if p.exists() else ""


@contextlib.contextmanager
def prometheus(targets: list[str]) -> Iterator[Prometheus]:
    d = Path(tempfile.mkdtemp(prefix="ingest-prom-"))
    conf = d / "prometheus.yml"
    conf.write_text(
        json.dumps(
            {  # YAML is a superset of JSON
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in RULES],
                "scrape_configs": [{"job_name": "ingest", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    p = Prometheus(free_port(), d)
    log = (d / "prometheus.log").open("wb")
    p.proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={conf}",
            f"--storage.tsdb.path={d / 'data'}",
            f"--web.listen-address=127.0.0.1:{p.port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if p.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {p.log()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{p.url}/-/ready", timeout=1) as r:
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready: {p.log()}")
            time.sleep(0.1)
        yield p
    finally:
        terminate(p.proc, 10)
        log.close()
        shutil.rmtree(d, ignore_errors=True)
