"""Benchmark: the service against the physical limits of this machine, in one run.

Measures, on the same messages (realistic v1 JSON of all four classes):
  1. broker limit  — QoS 1 to a C subscriber (mosquitto_sub): backlog drain of a
                     persistent session, and a live flood;
  2. database limit — COPY of the same rows into the same schema (unique keys);
  3. naive bridge  — paho + json + one INSERT per message (the floor);
  4. this service  — one worker and two workers on the shared subscription,
                     draining a backlog (ack after commit, dedup on);
  5. latency       — publish → commit p50/p99 at half the one-worker rate, from
                     PostgreSQL's commit timestamps (track_commit_timestamp), with
                     the cores each process used meanwhile (the publishers send
                     pre-encoded packets with the time patched in);
  6. optionally a soak (--soak SECONDS): worker RSS and the messages it holds over
     time at half load;
  7. the durable transport (bench/durable.py) — a private 3-node RabbitMQ cluster
     holding a backlog devices published over MQTT: the engine's own drain (our
     AMQP consumer, no pipeline) and one worker draining it into PostgreSQL, in the
     same rounds as the MQTT cases (--durable-messages, smaller: the cluster's MQTT
     intake is a few thousand msgs/s on this machine).
Every case also reports the CPU the broker and PostgreSQL spent on it, and the
one-worker case the machine's CPU budget per message (what bounds the rate). The
drains run in rounds (--repeat), one of each case per round, because the machine is
shared and its speed drifts: each case reports its median run, and the ratios are
taken round by round. It starts its own Mosquitto and a private, durable (fsync on)
PostgreSQL, prints a table and writes JSON to bench/results/. Usage: python -m bench.run --help
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from adapters import ADAPTERS, CLASSES
from bench import durable, publisher
from bench.messages import generate
from ingest import topics
from ingest.batch import Batch
from ingest.dispatch import Dispatcher
from ingest.localcluster import rabbit_cluster
from ingest.localservices import Broker, broker, free_port, private_postgres
from ingest.migrate import migrate

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after the command name: [0] state, [1] parent pid, [11] utime,
    [12] stime, [13] cutime, [14] cstime (clock ticks)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a process, from /proc."""
    fields = stat_fields(pid)
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return cpu, hwm


class CpuMeter:
    """CPU seconds of a server process and all its children, live or already exited
    (PostgreSQL's backends come and go with connections): the process's own time, the
    time of the children it has reaped, and that of its live children."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.read()

    @staticmethod
    def _stat(pid: int | str) -> list[str] | None:
        try:
            return stat_fields(pid)
        except (OSError, IndexError):  # the process is gone
            return None

    def read(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        own = self._stat(self.pid)
        if own is None:
            return 0.0
        total = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                f = self._stat(entry.name)
                if f is not None and int(f[1]) == self.pid:
                    total += int(f[11]) + int(f[12])
        return total / tick

    def used(self) -> float:
        """CPU seconds since the meter was made."""
        return self.read() - self.start


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def _wait(p: subprocess.Popen[bytes], options: int) -> float | None:
    pid, status, ru = os.wait4(p.pid, options)
    if not pid:
        return None
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def reap(p: subprocess.Popen[bytes]) -> float:
    """Wait for a child; its CPU seconds from the kernel's rusage, which include the
    children it has joined itself. (Its ru_maxrss is not reported: it counts the
    benchmark's own pages shared before exec.)"""
    cpu = _wait(p, 0)
    assert cpu is not None  # a blocking wait returns the child
    return cpu


def reaped(p: subprocess.Popen[bytes]) -> float | None:
    """`reap` if the child has exited, else None (without waiting)."""
    return _wait(p, os.WNOHANG)


def rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def decode_rows(msgs: list[tuple[str, bytes]]) -> tuple[Batch, int]:
    """The rows the service would write for these messages."""
    d = Dispatcher(ADAPTERS, "gz", timedelta(minutes=5), timedelta(days=400))
    batch = Batch(0.0)
    now = datetime.now(UTC)
    for topic, payload in msgs:
        batch.add(d.decode(topic, payload, now), now, topic, payload)
    return batch, batch.row_count


# ---- 1. broker limit ----


def c_subscriber(port: int, filter_: str, count: int, client_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-c",
            "-i",
            client_id,
            "-x",
            "3600",
            "-t",
            filter_,
            "-C",
            str(count),
            "-F",
            "%m",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def persistent_session(port: int, client_id: str, filter_: str, v5: bool) -> None:
    """Create a persistent session subscribed to `filter_`, so that what is published
    next is queued for it (the backlog a drain measures)."""
    version = ["-V", "mqttv5", "-x", "3600"] if v5 else []
    subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            *version,
            "-q",
            "1",
            "-c",
            "-i",
            client_id,
            "-t",
            filter_,
            "-E",
        ],
        check=True,
    )


def broker_drain(b: Broker, msgs: list[tuple[str, bytes]], procs: int) -> dict[str, Any]:
    filter_ = "$share/cbench/gz/v1/+/+/+"
    persistent_session(b.port, "c-drain", filter_, v5=True)
    publisher.publish(b.port, msgs, procs)
    meter = CpuMeter(b.pid)
    t0 = time.perf_counter()
    sub = c_subscriber(b.port, filter_, len(msgs), "c-drain")
    cpu = reap(sub)
    el = time.perf_counter() - t0
    return {
        "messages": len(msgs),
        "seconds": el,
        "msgs_per_s": len(msgs) / el,
        "cpu_s_per_1000": cpu / len(msgs) * 1000,
        "broker_cpu_s_per_1000": meter.used() / len(msgs) * 1000,
    }


def broker_flood(b: Broker, msgs: list[tuple[str, bytes]], procs: int) -> dict[str, Any]:
    sub = c_subscriber(b.port, "gz/v1/+/+/+", len(msgs), "c-flood")
    time.sleep(0.5)
    meter = CpuMeter(b.pid)
    t0 = time.perf_counter()
    pub_s = publisher.publish(b.port, msgs, procs)
    cpu = reap(sub)
    el = time.perf_counter() - t0
    return {
        "broker_cpu_s_per_1000": meter.used() / len(msgs) * 1000,
        "messages": len(msgs),
        "seconds": el,
        "msgs_per_s": len(msgs) / el,
        "publisher_msgs_per_s": len(msgs) / pub_s,
        "publisher_bound": len(msgs) / el > 0.9 * len(msgs) / pub_s,
        "cpu_s_per_1000": cpu / len(msgs) * 1000,
    }


# ---- 2. database limit ----


async def db_copy(
    url: str, pg_pid: int, batch: Batch, messages: int, connections: int, batch_rows: int = 5000
) -> dict[str, Any]:
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    try:
        jobs: list[tuple[str, list[Any], tuple[str, ...]]] = []
        for cls, rows in batch.rows.items():
            cols = (
                "device_id",
                "ts",
                "point",
                "seq",
                *next(a.device_class.columns for a in ADAPTERS if a.device_class.name == cls),
            )
            for i in range(0, len(rows), batch_rows):
                jobs.append((f"readings_{cls}", rows[i : i + batch_rows], cols))
        queue: asyncio.Queue[tuple[str, list[Any], tuple[str, ...]]] = asyncio.Queue()
        for j in jobs:
            queue.put_nowait(j)

        async def work(conn: Any) -> None:
            while not queue.empty():
                table, rows, cols = queue.get_nowait()
                async with conn.transaction():
                    await conn.copy_records_to_table(table, records=rows, columns=cols)

        meter = CpuMeter(pg_pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(work(c) for c in conns))
        el = time.perf_counter() - t0
        db_cpu = meter.used()
    finally:
        for c in conns:
            await c.close()
    n_rows = sum(len(r) for r in batch.rows.values())
    return {
        "connections": connections,
        "rows": n_rows,
        "seconds": el,
        "rows_per_s": n_rows / el,
        "msgs_per_s": messages / el,
        "db_cpu_s_per_1000": db_cpu / messages * 1000,
    }


# ---- 3. naive bridge ----


def naive(b: Broker, url: str, pg_pid: int, msgs: list[tuple[str, bytes]], procs: int) -> dict[str, Any]:
    # create the session, queue the backlog, then drain it
    persistent_session(b.port, "bench-naive", "gz/v1/+/+/+", v5=False)
    publisher.publish(b.port, msgs, procs)
    meters = CpuMeter(b.pid), CpuMeter(pg_pid)
    p = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "naive_bridge.py"), str(b.port), url, str(len(msgs))],
        stdout=subprocess.PIPE,
    )
    assert p.stdout is not None
    out = p.stdout.read()
    cpu = reap(p)
    el = float(out.decode().strip().splitlines()[-1])
    return {
        "messages": len(msgs),
        "seconds": el,
        "msgs_per_s": len(msgs) / el,
        "cpu_s_per_1000": cpu / len(msgs) * 1000,
        "broker_cpu_s_per_1000": meters[0].used() / len(msgs) * 1000,
        "db_cpu_s_per_1000": meters[1].used() / len(msgs) * 1000,
    }


# ---- 4. the service ----


def worker(b: Broker, url: str, n: int, port: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "INGEST_MQTT_URL": b.url,
        "INGEST_DATABASE_URL": url,
        "INGEST_MQTT_CLIENT_ID": f"bench-worker-{n}",
        "INGEST_HTTP_PORT": str(port),
        "INGEST_LOG_LEVEL": "WARNING",
        "INGEST_ROLLUP_INTERVAL_S": "3600",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        result: dict[str, Any] = json.loads(r.read())
        return result


def wait_health(port: int, key: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            h = health(port)
            if h.get(key):
                return h
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"worker on :{port} never reported {key}")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def service_drain(
    b: Broker,
    url: str,
    pg_pid: int,
    msgs: list[tuple[str, bytes]],
    workers: int,
    procs: int,
    extra: dict[str, str],
) -> dict[str, Any]:
    ports = [free_port() for _ in range(workers)]
    # First start: migrate and create the sessions; then stop, queue the backlog, restart.
    ws = [worker(b, url, i, ports[i], extra) for i in range(workers)]
    for port in ports:
        wait_health(port, "mqtt_connected")
    time.sleep(0.5)
    # What starting costs (imports, connections, the first rollup), to take out of the
    # CPU per message below: the second start costs the same.
    startup_cpu = sum(proc_stats(w.pid)[0] for w in ws)
    stop(ws)
    # A clean stop leaves the shared group and ends the session (expiry 0): park one
    # per worker again, as a crashed worker would leave it, for the backlog to queue in.
    for i in range(workers):
        persistent_session(b.port, f"bench-worker-{i}", topics.subscription("gz", "ingest"), True)
    publisher.publish(b.port, msgs, procs)
    meters = CpuMeter(b.pid), CpuMeter(pg_pid)
    ws = [worker(b, url, i, ports[i], extra) for i in range(workers)]
    t_first = t_end = 0.0
    first_count = 0
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            total = 0
            for port in ports:
                with contextlib.suppress(OSError, KeyError):
                    total += health(port)["committed_messages"]
            now = time.perf_counter()
            if total and not t_first:
                t_first, first_count = now, total
            if total >= len(msgs):
                t_end = now
                break
            time.sleep(0.05)
        stats = [proc_stats(w.pid) for w in ws]
        broker_cpu, db_cpu = (m.used() for m in meters)
    finally:
        stop(ws)
    if not t_end:
        raise RuntimeError("the workers did not drain the backlog in time")
    el = t_end - t_first
    drained = len(msgs) - first_count
    cpu = sum(s[0] for s in stats) - startup_cpu
    return {
        "workers": workers,
        "messages": len(msgs),
        "seconds": el,
        "msgs_per_s": drained / el,
        "startup_cpu_s": startup_cpu,
        "cpu_s_per_1000": cpu / len(msgs) * 1000,
        "broker_cpu_s_per_1000": broker_cpu / len(msgs) * 1000,
        "db_cpu_s_per_1000": db_cpu / len(msgs) * 1000,
        "peak_rss_mib": max(s[1] for s in stats),
    }


async def latency_from_db(url: str, since: datetime) -> dict[str, Any]:
    """Publish → commit latency of every reading since `since`, summarised in SQL
    (fetching millions of rows into Python took minutes)."""
    union = " UNION ALL ".join(
        f"SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts)::float8 AS s "
        f"FROM {c.table} WHERE ts >= $1"
        for c in CLASSES
    )
    conn = await asyncpg.connect(url)
    try:
        r = await conn.fetchrow(
            f"SELECT count(*) AS n, percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY s) AS q, "
            f"max(s) AS max FROM ({union}) AS l",
            since,
        )
        p50, p99 = r["q"] or (None, None)  # no rows: no percentiles
        return {"n": r["n"], "p50": p50, "p99": p99, "max": r["max"]}
    finally:
        await conn.close()


async def _dead(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT reason, count(*) AS n FROM dead_letters GROUP BY 1")
        return {r["reason"]: r["n"] for r in rows}
    finally:
        await conn.close()


def latency(
    b: Broker,
    url: str,
    pg_pid: int,
    rate: float,
    seconds: float,
    procs: int,
    extra: dict[str, str],
    soak: float = 0.0,
) -> dict[str, Any]:
    port = free_port()
    w = worker(b, url, 0, port, extra)
    # (seconds since start, worker RSS MiB, messages received and not yet committed)
    samples: list[tuple[float, float, int]] = []
    try:
        wait_health(port, "mqtt_connected")
        time.sleep(0.5)
        since = datetime.now(UTC)
        duration = max(seconds, soak)
        n = int(rate * duration)
        worker_cpu0 = proc_stats(w.pid)[0]
        meters = CpuMeter(b.pid), CpuMeter(pg_pid)
        t0 = time.perf_counter()
        pub = subprocess.Popen(
            [sys.executable, "-c", _LIVE_PUBLISHER, str(b.port), str(n), str(rate), str(procs)], cwd=ROOT
        )
        while (pub_cpu := reaped(pub)) is None:
            samples.append((time.perf_counter() - t0, rss(w.pid), health(port)["pending_messages"]))
            time.sleep(min(10.0, max(1.0, duration / 60)))
        wait_until = time.monotonic() + 60
        while time.monotonic() < wait_until and health(port)["committed_messages"] < n:
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        committed = health(port)["committed_messages"]
        cpu = {
            "worker": proc_stats(w.pid)[0] - worker_cpu0,
            "broker": meters[0].used(),
            "postgres": meters[1].used(),
            "publishers": pub_cpu,
        }
        lat = asyncio.run(latency_from_db(url, since - timedelta(seconds=1)))
        dead = asyncio.run(_dead(url))
    finally:
        stop([w])
    return {
        "rate": rate,
        "published": n // procs * procs,
        "committed": committed,
        "dead_letters": dead,
        "messages": lat["n"],
        "p50_s": lat["p50"],
        "p99_s": lat["p99"],
        "max_s": lat["max"],
        # Share of the machine's cores each process used over the run.
        "cores": {k: v / elapsed for k, v in cpu.items()},
        "rss_mib": [(t, r) for t, r, _ in samples],
        "pending": [(t, p) for t, _, p in samples],
    }


# A paced publisher whose timestamps are the publish time (latency = commit - ts).
_LIVE_PUBLISHER = """
import sys
from bench.live import run
run(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
"""


def python_build() -> str:
    """Which interpreter ran the benchmark and whether it runs from a shared libpython:
    on this machine Debian's /usr/bin/python3.11 (libpython linked into the binary)
    spent about a quarter less CPU on the worker's code than pyenv's 3.11.7, built
    --enable-shared (docs/scaling.md)."""
    exe = getattr(sys, "_base_executable", sys.executable)
    with open("/proc/self/maps") as f:
        shared = "libpython" in f.read()
    return f"{exe}, libpython {'shared' if shared else 'linked in'}"


def cpu_reference() -> float:
    """ns per step of a fixed pure-Python loop (dict look-ups, a float, a list
    append), best of 5: the same code on the same interpreter, so that runs on
    different days can be told apart by the machine's speed, not by the code."""

    def loop() -> None:
        d = {"a": 1, "b": 2.5}
        out: list[float] = []
        for i in range(100_000):
            out.append(d["a"] * i + d.get("b", 0.0))

    best_s = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        loop()
        best_s = min(best_s, time.perf_counter() - t)
    return best_s / 100_000 * 1e9


def versions() -> dict[str, Any]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "?"

    import asyncpg as apg
    import orjson

    return {
        "python": platform.python_version(),
        "python_build": python_build(),
        "cpu_reference_ns": round(cpu_reference(), 1),
        "machine": f"{os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "mosquitto": out(["dpkg-query", "-W", "-f=${Version}", "mosquitto"]),
        "postgresql": out(["psql", "--version"]),
        "asyncpg": apg.__version__,
        "orjson": orjson.__version__,
    }


def ratios(rounds: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Service ÷ reference, round by round (runs made minutes apart), and the median."""
    out = {}
    pairs = [
        (svc, label, ref, ref_label)
        for svc, label in (("service1", "1 worker"), ("service2", "2 workers"))
        for ref, ref_label in (("broker_drain", "broker drain limit"), ("naive", "naive bridge"))
    ]
    pairs += [
        ("durable_service1", "durable: 1 worker", "durable_drain", "engine drain"),
        ("durable_service1", "durable: 1 worker", "service1", "MQTT: 1 worker"),
    ]
    for svc, label, ref, ref_label in pairs:
        if svc in rounds and ref in rounds:
            each = [a / b for a, b in zip(rounds[svc], rounds[ref], strict=True)]
            out[f"{label} / {ref_label}"] = {"median": statistics.median(each), "rounds": each}
    return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate, with the rates of all runs beside it (this
    machine is shared: one run can be a third off the next)."""
    ordered = sorted(runs, key=lambda r: r["msgs_per_s"])
    mid = dict(ordered[(len(ordered) - 1) // 2])
    mid["runs_msgs_per_s"] = [r["msgs_per_s"] for r in runs]
    return mid


def spread(r: dict[str, Any]) -> str:
    rates = r.get("runs_msgs_per_s", [])
    if len(rates) < 2:
        return ""
    return f"runs {min(rates):,.0f}–{max(rates):,.0f}"


def table(res: dict[str, Any]) -> str:
    rows = [("case", "msgs/s", "rows/s", "CPU s/1k msgs", "broker", "PostgreSQL", "peak RSS MiB", "note")]

    def cpu(r: dict[str, Any], key: str) -> str:
        return f"{r[key]:.3f}" if key in r else ""

    for key, label in (
        ("broker_drain", "broker: backlog drain → mosquitto_sub"),
        ("broker_flood", "broker: live flood → mosquitto_sub"),
    ):
        if key in res:
            r = res[key]
            note = spread(r)
            if "publisher_msgs_per_s" in r:
                bound = "publisher-bound: " if r.get("publisher_bound") else ""
                note = f"{bound}publisher {r['publisher_msgs_per_s']:,.0f}/s"
            rows.append(
                (
                    label,
                    f"{r['msgs_per_s']:,.0f}",
                    "",
                    f"{r['cpu_s_per_1000']:.3f}",
                    cpu(r, "broker_cpu_s_per_1000"),
                    "",
                    "",
                    note,
                )
            )
    for r in res.get("db_copy", []):
        rows.append(
            (
                f"database: COPY, {r['connections']} conn",
                f"{r['msgs_per_s']:,.0f}",
                f"{r['rows_per_s']:,.0f}",
                "",
                "",
                cpu(r, "db_cpu_s_per_1000"),
                "",
                "unique keys, fsync on",
            )
        )
    if "naive" in res:
        rows.append(
            (
                "naive bridge (paho+json+INSERT)",
                f"{res['naive']['msgs_per_s']:,.0f}",
                "",
                f"{res['naive']['cpu_s_per_1000']:.3f}",
                cpu(res["naive"], "broker_cpu_s_per_1000"),
                cpu(res["naive"], "db_cpu_s_per_1000"),
                "",
                f"{res['naive']['messages']:,} msgs {spread(res['naive'])}",
            )
        )
    for r in res.get("service", []):
        rows.append(
            (
                f"service, {r['workers']} worker(s)",
                f"{r['msgs_per_s']:,.0f}",
                f"{r['msgs_per_s'] * res['rows_per_msg']:,.0f}",
                f"{r['cpu_s_per_1000']:.3f}",
                cpu(r, "broker_cpu_s_per_1000"),
                cpu(r, "db_cpu_s_per_1000"),
                f"{r['peak_rss_mib']:.0f}",
                f"ack after commit, dedup on {spread(r)}",
            )
        )
    if "durable_drain" in res:
        r = res["durable_drain"]
        rows.append(
            (
                "durable: engine drain (our AMQP consumer)",
                f"{r['msgs_per_s']:,.0f}",
                "",
                f"{r['client_cpu_s_per_1000']:.3f}",
                "",
                "",
                "",
                f"{r['messages']:,} msgs, MQTT intake {r['intake_msgs_s']:,.0f}/s {spread(r)}",
            )
        )
    if "durable_service1" in res:
        r = res["durable_service1"]
        rows.append(
            (
                "durable: service, 1 worker",
                f"{r['msgs_per_s']:,.0f}",
                f"{r['msgs_per_s'] * res['rows_per_msg']:,.0f}",
                f"{r['cpu_s_per_1000']:.3f}",
                "",
                "",
                "",
                f"3-node quorum queue, ack after commit {spread(r)}",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    if "latency" in res:
        lat = res["latency"]
        lines.append(
            f"latency publish→commit at {lat['rate']:,.0f} msgs/s: p50 {lat['p50_s'] * 1000:.0f} ms, "
            f"p99 {lat['p99_s'] * 1000:.0f} ms ({lat['messages']:,} rows of {lat['published']:,} published, "
            f"{lat['committed']:,} committed, dead letters {lat['dead_letters'] or 'none'})"
        )
        if lat.get("cores") and lat.get("rss_mib"):
            lines.append(
                "  cores used meanwhile: "
                + ", ".join(f"{k} {v:.2f}" for k, v in lat["cores"].items())
                + f"; worker RSS {lat['rss_mib'][0][1]:.0f} → {lat['rss_mib'][-1][1]:.0f} MiB"
                + f" (peak {max(r for _, r in lat['rss_mib']):.0f}),"
                + f" messages waiting in the worker at most {max(p for _, p in lat['pending']):,}"
            )
    for k, v in res.get("ratios", {}).items():
        each = ", ".join(f"{x:.2f}" for x in v["rounds"])
        lines.append(f"{k}: {v['median']:.2f} (median of rounds: {each})")
    if "budget" in res:
        b = res["budget"]
        lines.append(
            f"CPU per message with 1 worker: worker {b['worker_us']:.1f} µs + broker {b['broker_us']:.1f} µs"
            f" + PostgreSQL {b['db_us']:.1f} µs = {b['total_us']:.1f} µs on {b['cores']} cores"
        )
        lines.append(
            f"  ⇒ at most {b['ceiling_this_worker']:,.0f} msgs/s with this worker; with a worker that cost"
            f" nothing, at most {b['ceiling_free_worker']:,.0f} msgs/s"
            + (
                f" = {b['free_worker_of_drain']:.0%} of the broker drain limit"
                if "free_worker_of_drain" in b
                else ""
            )
        )
    return "\n".join(lines)


def budget(one: dict[str, Any], drain: dict[str, Any] | None) -> dict[str, Any]:
    """What the machine allows: the broker and PostgreSQL share its cores with the
    worker, and each single-threaded process is bound by one core."""
    cores = os.cpu_count() or 1
    w, b, d = (one[k] / 1000 for k in ("cpu_s_per_1000", "broker_cpu_s_per_1000", "db_cpu_s_per_1000"))
    out: dict[str, Any] = {
        "cores": cores,
        "worker_us": w * 1e6,
        "broker_us": b * 1e6,
        "db_us": d * 1e6,
        "total_us": (w + b + d) * 1e6,
        "ceiling_this_worker": min(cores / (w + b + d), 1 / w, 1 / b),
        "ceiling_free_worker": min(cores / (b + d), 1 / b),
    }
    if drain is not None:
        out["free_worker_of_drain"] = out["ceiling_free_worker"] / drain["msgs_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000, help="backlog size (default 200000)")
    ap.add_argument("--naive-messages", type=int, default=20_000, help="backlog for the naive bridge")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes (default 2)")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        help="messages/s for the latency run (default: half the one-worker drain rate)",
    )
    ap.add_argument("--soak", type=float, default=0.0, help="soak seconds at half load (RSS over time)")
    ap.add_argument("--skip", default="", help="comma list: broker,db,naive,service,latency,durable")
    ap.add_argument(
        "--durable-messages",
        type=int,
        default=30_000,
        help="backlog of the durable transport's cases (default 30000)",
    )
    ap.add_argument(
        "--workers", default="1,2", help="service cases: comma list of worker counts (default 1,2)"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of the drain cases (broker drain, naive bridge, service), one run of each per round;"
        " each case reports its median run, the ratios are taken round by round (default 3)",
    )
    ap.add_argument(
        "--pg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the benchmark's PostgreSQL, e.g. --pg checkpoint_timeout=30min (repeatable)",
    )
    ap.add_argument("--max-rows", default="", help="INGEST_BATCH_MAX_ROWS (default: theirs)")
    ap.add_argument("--max-age-ms", default="", help="INGEST_BATCH_MAX_AGE_MS (default: theirs)")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if "naive" not in skip:
        try:
            import psycopg  # noqa: F401  # the naive bridge's driver
        except ImportError:
            ap.error("the naive bridge needs the bench extra: pip install -e '.[bench]' (or --skip naive)")
    extra = {
        k: v
        for k, v in (("INGEST_BATCH_MAX_ROWS", args.max_rows), ("INGEST_BATCH_MAX_AGE_MS", args.max_age_ms))
        if v
    }
    res: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "versions": versions(),
        "args": vars(args),
    }
    v = res["versions"]
    log(
        f"Python {v['python']}, {v['python_build']}; CPU reference {v['cpu_reference_ns']} ns a step"
        " (a fixed pure-Python loop: lower is a faster machine)"
    )
    msgs = generate(args.messages)
    batch, rows = decode_rows(msgs)
    res["rows_per_msg"] = rows / len(msgs)
    log(f"{len(msgs):,} messages, {rows:,} rows, {sum(len(p) for _, p in msgs) / len(msgs):.0f} B/msg avg")
    for setting in args.pg:
        if "=" not in setting:
            ap.error(f"--pg {setting!r}: expected NAME=VALUE")
    pg_settings = ("track_commit_timestamp=on", "max_wal_size=4GB", *args.pg)
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(private_postgres(durable=True, settings=pg_settings))
        pg_pid = postmaster_pid(pg.dir / "data")
        cluster = None
        if "durable" not in skip:
            log("durable transport: starting a private 3-node RabbitMQ cluster")
            cluster = stack.enter_context(rabbit_cluster())
            durable.setup(cluster)
        dmsgs = generate(args.durable_messages, seed=5)

        async def fresh_db(name: str) -> str:
            conn = await asyncpg.connect(pg.url)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
            await conn.close()
            url = pg.url.rsplit("/", 1)[0] + "/" + name
            c2 = await asyncpg.connect(url)
            await migrate(c2, use_timescale=False)
            await c2.close()
            return url

        reps = args.repeat

        def drain_case(i: int) -> dict[str, Any]:
            with broker() as b:
                return broker_drain(b, msgs, args.publishers)

        def naive_case(i: int) -> dict[str, Any]:
            url = asyncio.run(fresh_db(f"naive{i}"))
            with broker() as b:
                return naive(b, url, pg_pid, msgs[: args.naive_messages], args.publishers)

        def service_case(workers: int) -> Callable[[int], dict[str, Any]]:
            def case(i: int) -> dict[str, Any]:
                url = asyncio.run(fresh_db(f"service{workers}_{i}"))
                with broker() as b:
                    return service_drain(b, url, pg_pid, msgs, workers, args.publishers, extra)

            return case

        if "broker" not in skip:
            with broker() as b:
                log("broker: live flood to mosquitto_sub")
                res["broker_flood"] = broker_flood(b, msgs, args.publishers)
        if "db" not in skip:
            res["db_copy"] = []
            for conns in (1, 2):
                url = asyncio.run(fresh_db(f"copy{conns}"))
                log(f"database: COPY with {conns} connection(s)")
                res["db_copy"].append(asyncio.run(db_copy(url, pg_pid, batch, len(msgs), conns)))
        # The drains run in rounds, one of each case per round, so that the ratios
        # compare runs made under the same conditions (the machine is shared).
        cases: dict[str, tuple[str, Callable[[int], dict[str, Any]]]] = {}
        if "broker" not in skip:
            cases["broker_drain"] = ("broker: backlog drain to mosquitto_sub", drain_case)
        if "naive" not in skip:
            cases["naive"] = (f"naive bridge: {args.naive_messages:,} messages", naive_case)
        if "service" not in skip:
            for w in (int(w) for w in args.workers.split(",")):
                cases[f"service{w}"] = (f"service: {w} worker(s) draining {len(msgs):,}", service_case(w))
        if cluster is not None:
            rabbit = cluster

            def durable_drain_case(i: int) -> dict[str, Any]:
                return durable.engine_drain(rabbit, dmsgs)

            def durable_service_case(i: int) -> dict[str, Any]:
                url = asyncio.run(fresh_db(f"durable{i}"))
                return durable.service_drain(rabbit, url, dmsgs, extra)

            n = f"{len(dmsgs):,}"
            cases["durable_drain"] = (f"durable: engine drain of {n} (our AMQP consumer)", durable_drain_case)
            cases["durable_service1"] = (
                f"durable: 1 worker draining {n} from the quorum queue",
                durable_service_case,
            )
        rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in cases}
        for i in range(reps):
            for key, (what, case) in cases.items():
                log(f"{what}{f' (round {i + 1} of {reps})' if reps > 1 else ''}")
                rounds[key].append(case(i))
        res["rounds"] = {k: [r["msgs_per_s"] for r in v] for k, v in rounds.items()}
        for key in ("broker_drain", "naive", "durable_drain", "durable_service1"):
            if key in rounds:
                res[key] = median_run(rounds[key])
        res["service"] = [median_run(v) for k, v in rounds.items() if k.startswith("service")]
        if "latency" not in skip:
            one = next((r for r in res.get("service", []) if r["workers"] == 1), None)
            rate = args.latency_rate or (one["msgs_per_s"] if one else 20_000) / 2
            url = asyncio.run(fresh_db("latency"))
            with broker() as b:
                log(f"latency at {rate:,.0f} msgs/s for {max(args.latency_seconds, args.soak):.0f}s")
                res["latency"] = latency(
                    b, url, pg_pid, rate, args.latency_seconds, args.publishers, extra, args.soak
                )
    res["ratios"] = ratios(res.get("rounds", {}))
    svc = {r["workers"]: r for r in res.get("service", [])}
    if 1 in svc and "broker_cpu_s_per_1000" in svc[1]:
        res["budget"] = budget(svc[1], res.get("broker_drain"))
    print(table(res))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
