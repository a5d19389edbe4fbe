"""Fleet simulator: the plan's device fleet as MQTT telemetry, for demos, tests and
benchmarks.

Pure parts (deterministic given a seed and a simulated clock, no I/O): `fleet`
(which devices), `weather`, `devices` (per-class physics), `model` (the message
stream). I/O: `sinks` (MQTT, JSON lines), `publisher` (pacing, processes,
progress), `provision` (HTTP). `cli.main` is the `ingest simulate` sub-command.
"""

from ingest.simulate.fleet import TARGETS, Device, build_fleet, class_counts
from ingest.simulate.model import BAD_KINDS, Message, SimConfig, Simulation, nominal_rate
from ingest.simulate.weather import RainEvent, Weather

__all__ = [
    "BAD_KINDS",
    "TARGETS",
    "Device",
    "Message",
    "RainEvent",
    "SimConfig",
    "Simulation",
    "Weather",
    "build_fleet",
    "class_counts",
    "nominal_rate",
]
