import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from ingest.simulate.cli import main, resolve_window
from ingest.simulate.fleet import build_fleet
from ingest.simulate.provision import ProvisionError, provision

ARGS = ["--start", "2026-01-12T00:00:00+08:00", "--speed", "3600", "--duration", "3",
        "--bad-share", "0.02", "--churn", "2", "--quiet"]


def test_dry_run_writes_the_same_lines_for_the_same_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    assert main([*ARGS, "--output", str(a)]) == 0
    assert main([*ARGS, "--output", str(b)]) == 0
    assert main([*ARGS, "--seed", "2", "--output", str(c)]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    records = [json.loads(line) for line in a.read_text().splitlines()]
    assert records and {"topic", "payload", "ts"} <= records[0].keys()
    assert max(r["ts"] for r in records) - min(r["ts"] for r in records) <= 3 * 3600
    assert any("bad" in r for r in records) and any(r.get("retain") for r in records)


def test_help_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--bad-share" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--classes", "toaster"])
    with pytest.raises(SystemExit):
        main(["--dry-run", "--processes", "2"])


def test_window_ends_now_by_default() -> None:
    now = 1_800_000_000.0
    w = resolve_window(now, start=None, speed=3600, duration=60, messages=None, fleet_rate=1.0,
                       live=True)
    assert (w.start, w.until, w.notes) == (now - 216_000, now, [])
    ahead = resolve_window(now, start=now - 3600, speed=3600, duration=60, messages=None,
                           fleet_rate=1.0, live=True)
    assert ahead.until > now and "held" in ahead.notes[0]
    by_count = resolve_window(now, start=None, speed=0, duration=None, messages=1000,
                              fleet_rate=2.0, live=False)
    assert (by_count.start, by_count.until) == (now - 500, now)


Posted = tuple[str, str, list[dict[str, object]]]


class _Api(BaseHTTPRequestHandler):
    received: ClassVar[list[Posted]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers["Authorization"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Api]]]:
    handler = type("Api", (_Api,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_provision_posts_device_records_in_chunks(api: tuple[str, type[_Api]]) -> None:
    url, handler = api
    fleet = build_fleet(0.01, 1)
    assert provision(url + "/", "secret", fleet, chunk=200) == len(fleet) == 451
    assert [len(body) for _, _, body in handler.received] == [200, 200, 51]
    path, auth, body = handler.received[0]
    assert path == "/api/v1/devices" and auth == "Bearer secret"
    assert set(body[0]) == {"device_id", "class", "region", "site", "name", "attributes"}


def test_provision_without_the_endpoint_fails_clearly(api: tuple[str, type[_Api]],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    url, handler = api
    handler.status = 404
    with pytest.raises(ProvisionError, match="no device-provisioning endpoint"):
        provision(url, None, build_fleet(0.01, 1))
    assert main(["--provision", url, "--dry-run", "--quiet"]) == 1
    assert "provisioning failed" in capsys.readouterr().err
