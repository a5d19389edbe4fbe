"""`ingest simulate`: command-line front of the fleet simulator.

Reads the wall clock once, to place the simulated window so that it ends no later
than now (the service rejects readings more than 5 min ahead of reception).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from ingest.simulate.edge import VIAS, EdgeOptions, for_via
from ingest.simulate.fleet import CLASS_NAMES, build_fleet
from ingest.simulate.model import SimConfig, nominal_rate
from ingest.simulate.provision import ProvisionError, ocpp_keys, provision
from ingest.simulate.publisher import Job, Pacing, Progress, run_local, run_processes, run_to_file
from ingest.simulate.sinks import DEFAULT_MAX_INFLIGHT, BrokerOptions, SinkError
from ingest.simulate.weather import DAY

DEFAULT_DURATION = 60.0
FUTURE_SKEW = 300.0
HORIZON = 400 * DAY


@dataclass(frozen=True, slots=True)
class Window:
    """The simulated interval of a run: [start, until)."""

    start: float
    until: float
    notes: list[str] = field(default_factory=list)


def _future_offset(now: float, start: float) -> float:
    """How far ahead a `future_timestamp` message claims to be: past the real clock
    whatever the simulated time, in whole hours so that two runs with the same seed
    moments apart write the same bytes."""
    return max(DAY, math.ceil((now - start) / 3600) * 3600 + DAY)


def resolve_window(now: float, *, start: float | None, speed: float, duration: float | None,
                   messages: int | None, fleet_rate: float, live: bool) -> Window:
    """Place the simulated window. Pure: `now` is passed in.

    With a duration and a speed the window spans duration × speed and, unless a start
    is given, ends at `now`. With only a message count its length is estimated from
    the fleet's nominal rate. A live run never sends a message before the wall clock
    reaches its simulated time, so a window reaching past `now` slows to real time."""
    if duration is None and messages is None:
        duration = DEFAULT_DURATION
    if duration is not None and speed > 0:
        span = duration * speed
        bounded = True
    else:
        span = messages / fleet_rate if messages else DAY
        bounded = False
    begin = now - span if start is None else start
    until = begin + span if bounded else (math.inf if live else now)
    notes = []
    if (math.isfinite(until) and until > now + FUTURE_SKEW) or begin > now + FUTURE_SKEW:
        notes.append("the simulated window reaches past the wall clock: messages are held "
                     "until real time reaches them (the service rejects readings more than "
                     "5 min ahead)")
    if now - begin > HORIZON:
        notes.append("the simulated start is more than 400 days ago: the service rejects "
                     "such readings as too old")
    return Window(begin, until, notes)


def _parse_time(text: str) -> float:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value < 0.0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError("must be a non-negative number")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ingest simulate",
        description="Simulate the plan's device fleet and publish its telemetry over MQTT "
                    "(or write it as JSON lines).")
    fleet = p.add_argument_group("fleet")
    fleet.add_argument("--scale", type=float, default=0.01,
                       help="share of the 2024 plan targets (1.0: 1,820 reservoirs, 3,000 line "
                            "terminals, 40,000 charge points, 600,000 racks); default 0.01")
    fleet.add_argument("--seed", type=int, default=1, help="same seed, same fleet and messages")
    fleet.add_argument("--classes", default=",".join(CLASS_NAMES),
                       help="comma-separated device classes to simulate (default: all)")
    fleet.add_argument("--bad-share", type=_share, default=0.0,
                       help="share of reports followed by a deliberately bad copy (bad JSON, "
                            "unknown metric, out-of-range value, future timestamp)")
    fleet.add_argument("--churn", type=_positive, default=0.0,
                       help="outages per device per simulated day (offline/silence, then back)")
    clock = p.add_argument_group("time")
    clock.add_argument("--start", type=_parse_time,
                       help="simulated start (ISO 8601; UTC if no offset); default: so that the "
                            "run ends now")
    clock.add_argument("--speed", type=_positive, default=60.0,
                       help="simulated seconds per real second (default 60; 0: as fast as "
                            "possible, never ahead of the wall clock)")
    clock.add_argument("--rate", type=_positive, default=0.0,
                       help="ceiling on messages per second (default: none)")
    clock.add_argument("--duration", type=_positive, help="real seconds to run (default 60 "
                       "unless --messages is given)")
    clock.add_argument("--messages", type=int, help="stop after this many messages")
    out = p.add_argument_group("output")
    out.add_argument("--host", default="127.0.0.1")
    out.add_argument("--port", type=int, default=1883)
    out.add_argument("--prefix", default="gz", help="topic prefix (default gz)")
    out.add_argument("--client-id", default="gz-simulator")
    out.add_argument("--username")
    out.add_argument("--password")
    out.add_argument("--qos", type=int, choices=(0, 1), default=1)
    out.add_argument("--mqtt-version", choices=("5", "3.1.1"), default="5",
                     help="3.1.1 for RabbitMQ's MQTT listener (the durable transport)")
    out.add_argument("--max-inflight", type=int, default=DEFAULT_MAX_INFLIGHT,
                     help="QoS 1 messages in flight per connection (default %(default)s)")
    out.add_argument("--processes", type=int, default=1,
                     help="split the fleet over this many publishing processes")
    out.add_argument("--dry-run", action="store_true",
                     help="write JSON lines to stdout (or --output) instead of publishing")
    out.add_argument("--output", help="write JSON lines to this file instead of publishing")
    out.add_argument("--provision", metavar="URL",
                     help="first POST the fleet to URL/api/v1/devices")
    out.add_argument("--token", help="bearer token for --provision")
    out.add_argument("--via", default="",
                     help="comma-separated: ocpp-ws (chargers speak OCPP 1.6J to the central "
                          "system), sl651-tcp (reservoirs dial the SL651 centre; a station's id "
                          "becomes its 10-digit address); other devices still publish MQTT")
    out.add_argument("--ocpp-url", default="ws://127.0.0.1:9000/ocpp",
                     help="the central system for --via ocpp-ws (with --provision, each charger "
                          "gets its key through the API)")
    out.add_argument("--sl651", default="127.0.0.1:5651", metavar="HOST:PORT",
                     help="the SL651 centre for --via sl651-tcp")
    out.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    to_file = args.dry_run or args.output is not None
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if to_file and args.processes > 1:
        parser.error("--dry-run/--output write from one process; drop --processes")
    if args.messages is not None and args.messages < 0:
        parser.error("--messages must be non-negative")
    via = frozenset(v.strip() for v in args.via.split(",") if v.strip())
    if via - set(VIAS):
        parser.error(f"--via: {', '.join(sorted(via - set(VIAS)))} is not one of {', '.join(VIAS)}")
    if via and to_file:
        parser.error("--via speaks to live endpoints; drop --dry-run/--output")
    sl651_host, _, sl651_port = args.sl651.rpartition(":")
    if via and not sl651_port.isdigit():
        parser.error(f"--sl651: expected HOST:PORT, got {args.sl651!r}")
    try:
        fleet = for_via(build_fleet(args.scale, args.seed, classes), via)
    except ValueError as exc:
        parser.error(str(exc))
    if args.provision:
        try:
            n = provision(args.provision, args.token, fleet)
        except ProvisionError as exc:
            print(f"simulator: provisioning failed: {exc}", file=sys.stderr)
            return 1
        print(f"simulator: provisioned {n:,} devices at {args.provision}", file=sys.stderr)
    keys: dict[str, str] = {}
    if "ocpp-ws" in via and args.provision:
        try:
            keys = ocpp_keys(args.provision, args.token,
                             [d.device_id for d in fleet if d.device_class == "charger"])
        except ProvisionError as exc:
            print(f"simulator: OCPP keys: {exc}", file=sys.stderr)
            return 1

    now = time.time()
    window = resolve_window(now, start=args.start, speed=args.speed, duration=args.duration,
                            messages=args.messages, fleet_rate=nominal_rate(fleet),
                            live=not to_file)
    for note in window.notes:
        print(f"simulator: note: {note}", file=sys.stderr)
    config = SimConfig(start=window.start, seed=args.seed, prefix=args.prefix,
                       bad_share=args.bad_share, churn_per_day=args.churn,
                       future_offset_s=_future_offset(now, window.start))
    pacing = Pacing(speed=args.speed, rate=args.rate, duration=args.duration,
                    messages=args.messages)
    broker = BrokerOptions(host=args.host, port=args.port, client_id=args.client_id,
                           qos=args.qos, max_inflight=args.max_inflight,
                           username=args.username, password=args.password,
                           mqtt_version=5 if args.mqtt_version == "5" else 4)
    edge = None
    if via:
        edge = EdgeOptions(via, args.ocpp_url, sl651_host or "127.0.0.1", int(sl651_port), keys)
    job = Job(args.scale, classes, config, window.until, pacing, broker, edge)
    progress = Progress(enabled=not args.quiet)
    try:
        if to_file:
            with ExitStack() as stack:
                stream: IO[bytes] = (stack.enter_context(open(args.output, "wb"))
                                     if args.output else sys.stdout.buffer)
                counters = run_to_file(job, stream, progress, fleet)
        elif args.processes > 1:
            counters = run_processes(job, args.processes, progress)
        else:
            counters = run_local(job, progress, fleet)
    except SinkError as exc:
        progress.close()
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    progress.close()
    print(counters.summary(), file=sys.stderr)
    return 0
