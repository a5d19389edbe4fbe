"""Device-class adapters: pure decoders from MQTT payloads to canonical readings.

The registry is the explicit tuple `ADAPTERS`; `CLASSES` lists the device classes.
"""

from adapters import charger, datacenter, ocpp, power_line, reservoir, sl651
from adapters._base import (
    REASONS,
    Adapter,
    Decoded,
    DecodeError,
    DeviceClass,
    MetaField,
    Metric,
    State,
    Topic,
)
from adapters.status import status_adapter

CLASSES: tuple[DeviceClass, ...] = (
    reservoir.RESERVOIR,
    power_line.POWER_LINE,
    charger.CHARGER,
    datacenter.DATACENTER,
)

ADAPTERS: tuple[Adapter, ...] = (
    reservoir.ADAPTER,
    power_line.ADAPTER,
    charger.ADAPTER,
    ocpp.ADAPTER,
    datacenter.ADAPTER,
    sl651.ADAPTER,
    *(status_adapter(c) for c in CLASSES),
)

__all__ = [
    "ADAPTERS",
    "CLASSES",
    "REASONS",
    "Adapter",
    "DecodeError",
    "Decoded",
    "DeviceClass",
    "MetaField",
    "Metric",
    "State",
    "Topic",
]
