"""The command line for a person: a database that cannot be reached is one line naming
host, port and database in every command, never a traceback; output into a closed
pipe ends quietly; the CSV carries its as-of time; the demo's progress line, token
file and a taken port."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from ingest import cli, demo
from ingest.migrate import migrate
from ingest.simulate.publisher import Counters, Progress
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def ingest(*argv: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest.cli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(extra)
    return env


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    f = tmp_path / "fleet.csv"
    f.write_text("device_id,class\nres-1,reservoir\n")
    return f


COMMANDS = [
    ["migrate"],
    ["indicators"],
    ["dead-letters", "list"],
    ["dead-letters", "show", "1"],
    ["dead-letters", "replay"],
    ["run"],
]


@pytest.mark.parametrize("argv", [*COMMANDS, ["provision", "CSV"]], ids=lambda a: " ".join(a))
def test_a_missing_database_is_one_line(argv: list[str], csv_file: Path) -> None:
    argv = [str(csv_file) if a == "CSV" else a for a in argv]
    url = "postgresql://postgres@127.0.0.1:5432/ingest_no_such_database"
    r = ingest(*argv, env=clean_env(INGEST_DATABASE_URL=url, INGEST_HTTP_PORT="0"))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if "cannot connect" in line]
    assert len(lines) == 1, r.stderr
    assert "127.0.0.1:5432/ingest_no_such_database" in lines[0] and "does not exist" in lines[0]


@pytest.mark.parametrize("argv", COMMANDS[:5], ids=lambda a: " ".join(a))
def test_a_closed_port_is_one_line(argv: list[str]) -> None:
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/ingest"
    r = ingest(*argv, env=clean_env(INGEST_DATABASE_URL=url, INGEST_DATABASE_CONNECT_TIMEOUT_S="2"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"cannot connect to the database at 127.0.0.1:{port}/ingest" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_worker_names_the_database_it_waits_for() -> None:
    port = free_port()
    env = clean_env(INGEST_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/ingest")
    proc = subprocess.Popen([sys.executable, "-m", "ingest.cli", "run"], env=env, cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stderr is not None
    try:
        line = proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert f"database at 127.0.0.1:{port}/ingest not reachable" in line, line


@pytest.fixture
async def migrated(db_url: str) -> str:
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn, use_timescale=False)
    finally:
        await conn.close()
    return db_url


async def test_output_into_a_closed_pipe_ends_quietly(migrated: str) -> None:
    r, w = os.pipe()
    os.close(r)  # the reader (`head`) is gone before the first line is written
    try:
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "ingest.cli", "indicators"], env=clean_env(
                INGEST_DATABASE_URL=migrated), cwd=ROOT, stdout=w, stderr=subprocess.PIPE, text=True,
            timeout=60)  # fmt: skip
    finally:
        os.close(w)
    assert proc.stderr == "" and proc.returncode == 0


async def test_csv_carries_as_of(migrated: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("INGEST_DATABASE_URL", migrated)
    assert await asyncio.to_thread(cli.main, ["indicators", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(row["as_of"].endswith("Z") and row["as_of"][:2] == "20" for row in rows)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_updating_line_on_a_terminal() -> None:
    out = Terminal()
    p = Progress(out)
    c = Counters()
    for second in range(1, 6):
        c.sent = 100 * second
        p.update(c, 1000.0 + second)
    p.close()
    text = out.getvalue()
    assert text.count("\r") == 5 and text.count("\n") == 1 and text.endswith("\n")


def test_progress_elsewhere_is_a_line_every_10_seconds() -> None:
    out = io.StringIO()
    p = Progress(out)
    c = Counters()
    for second in range(1, 31):
        c.sent = 100 * second
        p.update(c, 1000.0 + second)
    assert out.getvalue().count("\n") == 3 and "\r" not in out.getvalue()


def test_token_file_keeps_the_tokens(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    first = demo.tokens(f)
    assert f.stat().st_mode & 0o777 == 0o600
    assert demo.tokens(f) == first and len(set(first)) == 2
    assert demo.tokens(None) != demo.tokens(None)  # without a file, new ones each run


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_port_says_how_to_choose_another(taken_port: int, tmp_path: Path) -> None:
    r = ingest("demo", "--http-port", str(taken_port), "--workdir", str(tmp_path), env=clean_env())
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"port {taken_port} on 127.0.0.1 is taken" in r.stderr and "--http-port" in r.stderr
