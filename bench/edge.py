"""Scale run of the edge endpoints: many charge points and RTUs on one worker.

    python -m bench.edge                      # 40,000 charge points, 2,000 stations, 5 min
    python -m bench.edge --chargers 2000 --stations 200 --duration 120

Starts a private Mosquitto (idle: the worker needs a broker) and a fresh database on
the machine's PostgreSQL, then ONE worker (`ingest run`, OCPP central system and
SL651 centre enabled) in its own process. Client processes (one per 10,000 charge
points) open the connections from distinct loopback addresses (127.0.0.2, … — one
address has only ~28k ephemeral ports) and play the fleet: each charge point
connects, boots, reports its connector status, then sends a Heartbeat every
`--heartbeat-s` and MeterValues every `--meter-s`, each at a random phase; each
station sends an hourly-style report (function 32) every `--station-s` and waits for
the downlink acknowledgement. Every answer is awaited: a CallResult arrives only
after its commit, so its latency is send → commit → answer.

Prints the connection setup rate, p50/p99 of the CallResult (and SL651 ack)
latency, calls and errors, and the worker's RSS and CPU (setup, steady state);
writes JSON to bench/results/. The clients are thin (hand-written WebSocket
frames with a zero mask key, which RFC 6455 permits a client to choose), so the
worker, not the clients, is what is measured; the clients share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from adapters.sl651 import Element, encode
from bench.run import proc_stats
from ingest.localservices import broker, free_port
from tests.services import create_database, drop_database

PER_PROCESS = 10_000
NOFILE = 200_000
RESULTS = Path(__file__).resolve().parent / "results"


def _raise_nofile() -> int:
    """Open files allowed to this process: as many as the hard limit permits (each
    connection is one). Returns the limit now in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        want = hard
    return want


# ---- a thin WebSocket client (masking key 0: the payload goes out as it is) ----


def _ws_frame(text: bytes) -> bytes:
    n = len(text)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + text


@dataclass
class Stats:
    connected_at: list[float] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def took(self, what: str, seconds: float) -> None:
        self.latency.setdefault(what, []).append(seconds)


class _WsClient(asyncio.Protocol):
    def __init__(self, path: str, port: int) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        ).encode()
        self.buf = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.upgraded.set_result(None)
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + n:
                return
            opcode, payload = buf[0] & 0x0F, bytes(buf[at : at + n])
            del buf[: at + n]
            if opcode == 1:
                msg = orjson.loads(payload)
                fut = self.waiting.pop(msg[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif opcode == 8:
                self.lost = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the upgrade"))
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    async def call(self, uid: str, action: str, payload: dict[str, Any], wait_s: float) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[uid] = fut
        assert self.transport is not None
        self.transport.write(_ws_frame(orjson.dumps([2, uid, action, payload])))
        return await asyncio.wait_for(fut, wait_s)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def _charge_point(
    i: int, source_ip: str, port: int, a: argparse.Namespace, stats: Stats, end: float,
    gate: asyncio.Semaphore,
) -> None:  # fmt: skip
    cp_id = f"BENCH-{i:06d}"
    loop = asyncio.get_running_loop()
    async with gate:
        try:
            _, proto = await loop.create_connection(
                lambda: _WsClient(f"/ocpp/{cp_id}", port), "127.0.0.1", port, local_addr=(source_ip, 0)
            )
            await asyncio.wait_for(proto.upgraded, 60)
        except (OSError, TimeoutError) as exc:
            stats.error(f"connect: {exc.__class__.__name__}")
            return
    stats.connected_at.append(time.time())
    rnd = random.Random(i)
    seq = 0
    energy = rnd.randrange(0, 10**7)

    async def call(action: str, payload: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        t0 = time.perf_counter()
        try:
            res = await proto.call(str(seq), action, payload, a.timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            stats.error(f"{action}: {exc.__class__.__name__}")
            return
        if res[0] != 3:
            stats.error(f"{action}: CallError {res[2]}")
            return
        stats.took(action, time.perf_counter() - t0)

    await call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "B1"})
    await call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
    now = time.time()
    next_hb = now + rnd.uniform(0, a.heartbeat_s)
    next_mv = now + rnd.uniform(0, a.meter_s)
    while True:
        due = min(next_hb, next_mv)
        if due >= end:
            break
        await asyncio.sleep(max(0.0, due - time.time()))
        if proto.lost:
            stats.error("disconnected")
            return
        if next_mv <= next_hb:
            next_mv += a.meter_s
            energy += rnd.randrange(100, 2000)
            sv = [
                {"value": str(energy), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": f"{rnd.uniform(0, 7000):.1f}", "measurand": "Power.Active.Import", "unit": "W"},
            ]
            mv = [{"timestamp": _now(), "sampledValue": sv}]
            await call("MeterValues", {"connectorId": 1, "meterValue": mv})
        else:
            next_hb += a.heartbeat_s
            await call("Heartbeat", {})
    assert proto.transport is not None
    proto.transport.close()


async def _station(i: int, port: int, a: argparse.Namespace, stats: Stats, end: float) -> None:
    address = f"{9000000000 + i:010d}"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        stats.error(f"sl651 connect: {exc.__class__.__name__}")
        return
    stats.connected_at.append(time.time())
    rnd = random.Random(i)
    serial = 0
    t = time.time() + rnd.uniform(0, a.station_s)
    while t < end:
        await asyncio.sleep(max(0.0, t - time.time()))
        t += a.station_s
        serial = serial % 65535 + 1
        obs = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=serial % 50)
        elements = [Element(0x3B, 1000 + rnd.uniform(0, 50)), Element(0x20, 0.5)]
        frame = encode(0x32, address, obs, elements, serial)
        t0 = time.perf_counter()
        writer.write(frame)
        try:
            ack = await asyncio.wait_for(reader.readexactly(25), a.timeout_s)
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            stats.error(f"sl651 ack: {exc.__class__.__name__}")
            return
        if ack[14:16] != serial.to_bytes(2, "big"):
            stats.error("sl651 ack: wrong serial")
        stats.took("sl651", time.perf_counter() - t0)
    writer.close()


def _client(part: int, a: argparse.Namespace, ports: tuple[int, int], start: float, out: Any) -> None:
    _raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    stats = Stats()
    ocpp_port, sl651_port = ports

    async def main() -> None:
        end = start + a.setup_s + a.duration
        await asyncio.sleep(max(0.0, start - time.time()))
        gate = asyncio.Semaphore(a.connect_concurrency)
        first, last = part * PER_PROCESS, min(a.chargers, (part + 1) * PER_PROCESS)
        source_ip = f"127.0.0.{2 + part}"
        tasks = [
            asyncio.create_task(_charge_point(i, source_ip, ocpp_port, a, stats, end, gate))
            for i in range(first, last)
        ]
        if part == 0:
            tasks += [asyncio.create_task(_station(i, sl651_port, a, stats, end)) for i in range(a.stations)]
        await asyncio.gather(*tasks)

    asyncio.run(main())
    out.put(orjson.dumps({"connected_at": stats.connected_at, "latency": stats.latency,
                          "errors": stats.errors}))  # fmt: skip


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _worker_config(
    path: Path, db_url: str, mqtt_port: int, ocpp_port: int, sl651_port: int, a: argparse.Namespace
) -> None:
    path.write_text(
        f"""log_level = "WARNING"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
client_id = "bench-edge"
[database]
url = "{db_url}"
[http]
port = 0
[ocpp]
enabled = true
port = {ocpp_port}
auth = "open"
heartbeat_interval_s = {int(a.heartbeat_s)}
[sl651]
enabled = true
port = {sl651_port}
"""
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__.split("\n\n")[0])
    p.add_argument("--chargers", type=int, default=40_000)
    p.add_argument("--stations", type=int, default=2_000)
    p.add_argument("--duration", type=float, default=300.0, help="seconds of steady state after setup")
    p.add_argument("--setup-s", type=float, default=90.0, help="seconds allowed for every connection to open")
    p.add_argument("--heartbeat-s", type=float, default=300.0)
    p.add_argument("--meter-s", type=float, default=60.0)
    p.add_argument("--station-s", type=float, default=300.0)
    p.add_argument("--timeout-s", type=float, default=60.0, help="an answer later than this is an error")
    p.add_argument("--connect-concurrency", type=int, default=500,
                   help="handshakes in flight per client process")  # fmt: skip
    a = p.parse_args(argv)
    limit = _raise_nofile()
    need = a.chargers + a.stations + 256  # the worker's own files, database and broker sockets
    if need > limit:
        raise SystemExit(
            f"bench.edge: one worker may open {limit} files here (RLIMIT_NOFILE, hard limit), so it "
            f"cannot hold {a.chargers + a.stations} connections; raise the limit (ulimit -Hn, "
            f"LimitNOFILE=, docker --ulimit nofile=) or run fewer (--chargers {limit - a.stations - 256})"
        )
    RESULTS.mkdir(exist_ok=True)
    db_url = asyncio.run(create_database())
    with tempfile.TemporaryDirectory() as tmp, broker() as b:
        ocpp_port, sl651_port = free_port(), free_port()
        cfg = Path(tmp) / "worker.toml"
        _worker_config(cfg, db_url, b.port, ocpp_port, sl651_port, a)
        worker = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "--config", str(cfg), "run"], preexec_fn=_raise_nofile
        )
        try:
            _wait_port(ocpp_port, worker)
            _wait_port(sl651_port, worker)
            cpu0, _ = proc_stats(worker.pid)
            parts = (a.chargers + PER_PROCESS - 1) // PER_PROCESS or 1
            start = time.time() + 2
            ctx = mp.get_context("fork")
            out = ctx.Queue()
            ports = (ocpp_port, sl651_port)
            procs = [ctx.Process(target=_client, args=(k, a, ports, start, out)) for k in range(parts)]
            for proc in procs:
                proc.start()
            time.sleep(max(0.0, start + a.setup_s - time.time()))
            cpu_setup, _ = proc_stats(worker.pid)
            rss_now_setup = _rss(worker.pid)
            t_steady = time.time()
            time.sleep(max(0.0, start + a.setup_s + a.duration - time.time()))
            cpu_end, rss_peak = proc_stats(worker.pid)
            rss_end = _rss(worker.pid)
            steady_wall = time.time() - t_steady
            results = [orjson.loads(out.get(timeout=a.timeout_s + 120)) for _ in procs]
            for proc in procs:
                proc.join(30)
        finally:
            worker.terminate()
            worker.wait(30)
    rows = asyncio.run(_count(db_url))
    asyncio.run(drop_database(db_url))
    connected = sorted(t for r in results for t in r["connected_at"])
    latency: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["latency"].items():
            latency.setdefault(k, []).extend(v)
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    setup_s = (connected[-1] - start) if connected else float("nan")
    ocpp_calls = [x for k, v in latency.items() if k != "sl651" for x in v]
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(a),
        "connections": len(connected),
        "setup_s": round(setup_s, 2),
        "setup_rate_per_s": round(len(connected) / setup_s, 1) if connected else 0,
        "callresult_p50_ms": round(_pct(ocpp_calls, 0.5) * 1000, 1),
        "callresult_p99_ms": round(_pct(ocpp_calls, 0.99) * 1000, 1),
        "calls": {k: len(v) for k, v in latency.items()},
        "by_action_p99_ms": {k: round(_pct(v, 0.99) * 1000, 1) for k, v in latency.items()},
        "sl651_ack_p50_ms": round(_pct(latency.get("sl651", []), 0.5) * 1000, 1),
        "sl651_ack_p99_ms": round(_pct(latency.get("sl651", []), 0.99) * 1000, 1),
        "errors": errors,
        "worker_rss_mib": {"after_setup": rss_now_setup, "end": rss_end, "peak": round(rss_peak, 1)},
        "worker_cpu": {
            "setup_core_s": round(cpu_setup - cpu0, 1),
            "steady_cores": round((cpu_end - cpu_setup) / steady_wall, 3),
        },
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"edge-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if not errors else 1


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _wait_port(port: int, worker: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.time() + 60
    while time.time() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} after 60 s")


async def _count(db_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(db_url)
    try:
        return {
            t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))
            for t in ("readings_charger", "readings_reservoir", "state_events", "dead_letters", "devices")
        }
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
