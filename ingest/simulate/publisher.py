"""Runs a simulation against the real clock: paces its messages (speed, rate,
never ahead of the wall clock), sends them to a sink, counts them, prints progress,
and splits the fleet over processes for benchmarks. The I/O half of the simulator.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from threading import BrokenBarrierError
from typing import IO, Any

from ingest.simulate.edge import EdgeOptions, EdgeSink, for_via
from ingest.simulate.fleet import Device, build_fleet
from ingest.simulate.model import CST, Message, SimConfig, Simulation
from ingest.simulate.sinks import BrokerOptions, FileSink, MqttSink, Sink, SinkError


@dataclass(frozen=True, slots=True)
class Pacing:
    speed: float = 60.0  # simulated seconds per real second; 0 = as fast as possible
    rate: float = 0.0  # ceiling in messages per second; 0 = none
    hold_future: bool = True  # never send a message whose time the wall clock has not reached
    duration: float | None = None  # real seconds
    messages: int | None = None


@dataclass(slots=True)
class Counters:
    sent: int = 0
    acked: int = 0
    errors: int = 0
    telemetry: Counter[str] = field(default_factory=Counter)  # good telemetry by class
    status: Counter[str] = field(default_factory=Counter)  # "online"/"offline" by class
    bad: Counter[str] = field(default_factory=Counter)  # bad messages by kind
    sim_time: float = 0.0
    elapsed: float = 0.0
    devices: int = 0

    def count(self, msg: Message) -> None:
        self.sent += 1
        self.sim_time = msg.ts
        if msg.bad:
            self.bad[msg.bad] += 1
        elif msg.channel == "status":
            self.status[msg.device_class] += 1
        else:
            self.telemetry[msg.device_class] += 1

    @classmethod
    def total(cls, parts: list[Counters]) -> Counters:
        out = cls()
        for p in parts:
            out.sent += p.sent
            out.acked += p.acked
            out.errors += p.errors
            out.telemetry.update(p.telemetry)
            out.status.update(p.status)
            out.bad.update(p.bad)
            out.devices += p.devices
            out.elapsed = max(out.elapsed, p.elapsed)
        live = [p.sim_time for p in parts if p.sim_time]
        out.sim_time = min(live) if live else 0.0
        return out

    def summary(self) -> str:
        rate = self.sent / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"simulator: {self.sent:,} messages in {self.elapsed:.1f} s ({rate:,.0f}/s), "
            f"{self.acked:,} acknowledged, {self.errors:,} errors, {self.devices:,} devices, "
            f"simulated time reached {_clock(self.sim_time)}",
        ]
        for name, counts in (("telemetry", self.telemetry), ("status", self.status),
                             ("bad", self.bad)):
            if counts:
                parts = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
                lines.append(f"  {name}: {sum(counts.values()):,} ({parts})")
        return "\n".join(lines)


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, CST).isoformat(timespec="minutes") if t else "-"


class Progress:
    """Progress on stderr: on a terminal one line updated in place every `interval`
    seconds; elsewhere (a log file, a pipe) a new line at most every 10 seconds, so that
    a long run does not scroll what came before (the demo's tokens) away."""

    def __init__(self, out: IO[str] | None = None, interval: float = 1.0,
                 enabled: bool = True) -> None:
        self.out = out if out is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.out.isatty()
        self.interval = interval if self.tty else max(interval, 10.0)
        self._last = 0.0
        self._last_sent = 0
        self._open = False  # a line updated in place waits for its newline

    def close(self) -> None:
        """End the line updated in place, if any."""
        if self._open:
            print(file=self.out, flush=True)
            self._open = False

    def update(self, c: Counters, now: float, force: bool = False) -> None:
        if not self.enabled or (not force and (now - self._last < self.interval or not c.sent)):
            return
        span = now - self._last if self._last else c.elapsed
        rate = (c.sent - self._last_sent) / span if span > 0 else 0.0
        self._last, self._last_sent = now, c.sent
        bad = sum(c.bad.values())
        line = (f"sent {c.sent:,} ({rate:,.0f}/s) acked {c.acked:,} bad {bad:,} "
                f"errors {c.errors:,} sim {_clock(c.sim_time)}")
        if self.tty:
            print(f"\r{line}\x1b[K", end="", file=self.out, flush=True)  # \x1b[K: clear to its end
            self._open = True
        else:
            print(line, file=self.out, flush=True)


def pump(
    messages: Iterator[Message],
    sink: Sink,
    pacing: Pacing,
    sim_start: float,
    counters: Counters,
    on_tick: Callable[[Counters, float], None],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Counters:
    """Send `messages` to `sink` paced by `pacing` until the stream or a limit ends
    (or Ctrl-C); `on_tick` is called often (for progress) with the counters and the
    wall clock. The simulated `sim_start` is shown at the wall-clock start."""
    t0 = clock()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops sending; counts survive
        _pump(messages, sink, pacing, sim_start, counters, on_tick, clock, sleep, t0)
    _tick(sink, counters, clock(), t0, on_tick)
    return counters


def _pump(messages: Iterator[Message], sink: Sink, pacing: Pacing, sim_start: float,
          counters: Counters,
          on_tick: Callable[[Counters, float], None], clock: Callable[[], float],
          sleep: Callable[[float], None], t0: float) -> None:
    limit = pacing.messages
    end = t0 + pacing.duration if pacing.duration is not None else None
    speed, rate, hold = pacing.speed, pacing.rate, pacing.hold_future
    now = t0
    for msg in messages:
        if limit is not None and counters.sent >= limit:
            break
        due = t0 + (msg.ts - sim_start) / speed if speed > 0 else 0.0
        if rate > 0:
            due = max(due, t0 + counters.sent / rate)
        if hold and msg.ts > due:
            due = msg.ts
        if due > now or counters.sent & 1023 == 0:
            now = clock()
            while due > now:
                if end is not None and now >= end:
                    break
                _tick(sink, counters, now, t0, on_tick)
                sleep(min(due - now, 0.2))
                now = clock()
            if end is not None and now >= end:
                break
            _tick(sink, counters, now, t0, on_tick)
        sink.send(msg)
        counters.count(msg)


def _tick(sink: Sink, c: Counters, now: float, t0: float,
          on_tick: Callable[[Counters, float], None]) -> None:
    c.acked, c.errors, c.elapsed = sink.acked, sink.errors, now - t0
    on_tick(c, now)


@dataclass(frozen=True, slots=True)
class Job:
    """Everything a worker process needs to rebuild its shard (picklable)."""

    scale: float
    classes: tuple[str, ...]
    config: SimConfig
    until: float
    pacing: Pacing
    broker: BrokerOptions
    edge: EdgeOptions | None = None  # --via: chargers and/or reservoirs on their native protocols


def _simulation(job: Job, fleet: Sequence[Device] | None = None) -> Simulation:
    if fleet is None:
        fleet = build_fleet(job.scale, job.config.seed, job.classes)
        if job.edge is not None:
            fleet = for_via(fleet, job.edge.via)
    return Simulation(fleet, job.config)


def _sink(job: Job) -> Sink:
    broker = MqttSink(job.broker)
    return broker if job.edge is None else EdgeSink(job.edge, broker)


def run_to_file(job: Job, stream: IO[bytes], progress: Progress,
                fleet: Sequence[Device] | None = None) -> Counters:
    """Write the messages as JSON lines, as fast as they are generated."""
    sim = _simulation(job, fleet)
    sink = FileSink(stream)
    pacing = Pacing(speed=0.0, hold_future=False, messages=job.pacing.messages)
    c = pump(sim.run(job.until), sink, pacing, job.config.start, Counters(devices=sim.devices),
             progress.update)
    sink.close(0.0)
    progress.update(c, time.time(), force=True)
    return c


def run_local(job: Job, progress: Progress, fleet: Sequence[Device] | None = None) -> Counters:
    """Publish from this process over one connection."""
    sim = _simulation(job, fleet)
    sink = _sink(job)
    c = Counters(devices=sim.devices)
    try:
        pump(sim.run(job.until), sink, job.pacing, job.config.start, c, progress.update)
    finally:
        sink.close(30.0)
    c.acked, c.errors = sink.acked, sink.errors
    progress.update(c, time.time(), force=True)
    return c


def _worker(job: Job, barrier: Any, out: Any) -> None:
    shard = job.config.shard
    try:
        sim = _simulation(job)
        sink = _sink(job)
    except SinkError as exc:
        barrier.abort()
        out.put((shard, "error", str(exc)))
        return
    c = Counters(devices=sim.devices)
    last = [0.0]

    def report(counters: Counters, now: float) -> None:
        if now - last[0] >= 0.25:
            last[0] = now
            out.put((shard, "progress", counters))

    try:
        barrier.wait()  # start the clocks together once every shard is connected
    except BrokenBarrierError:  # another shard failed and said why
        sink.close(0.0)
        return
    try:
        pump(sim.run(job.until), sink, job.pacing, job.config.start, c, report)
    finally:
        sink.close(30.0)
        c.acked, c.errors = sink.acked, sink.errors
        out.put((shard, "done", c))


def run_processes(job: Job, processes: int, progress: Progress) -> Counters:
    """Split the fleet over `processes` shards, one connection each; the limits on
    messages apply to the total."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    procs = []
    limit = job.pacing.messages
    for shard in range(processes):
        share = None if limit is None else limit // processes + (shard < limit % processes)
        sub = replace(job, config=replace(job.config, shard=shard, shards=processes),
                      pacing=replace(job.pacing, messages=share),
                      broker=replace(job.broker, client_id=f"{job.broker.client_id}-{shard}"))
        p = ctx.Process(target=_worker, args=(sub, barrier, out), name=f"simulate-{shard}")
        p.start()
        procs.append(p)
    latest: dict[int, Counters] = {}
    done: set[int] = set()
    failure: str | None = None
    try:
        while len(done) < processes:
            try:
                shard, what, payload = out.get(timeout=0.5)
            except queue.Empty:
                if all(not p.is_alive() for p in procs):
                    break  # a worker died without reporting
                continue
            if what == "error":
                failure = failure or payload
                done.add(shard)
                continue
            latest[shard] = payload
            if what == "done":
                done.add(shard)
            progress.update(Counters.total(list(latest.values())), time.time())
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
                p.join()
    if failure:
        raise SinkError(failure)
    total = Counters.total(list(latest.values()))
    progress.update(total, time.time(), force=True)
    return total
