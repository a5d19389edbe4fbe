"""Cost of decoding one v1 JSON telemetry message, per class.

Times the adapter end to end (orjson parse + hand-written validation) and, for the
same parsed document, a generic validator run on the published schema: jsonschema
(always) and fastjsonschema (when installed; it is not a dependency of the service).

    python bench/decode.py [--number N]
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from adapters import ADAPTERS, CLASSES, Topic
from adapters._jsonv1 import decode_document
from adapters.schemas import json_schema

RECEIVED = datetime(2024, 6, 15, 0, 10, tzinfo=UTC)

# Realistic messages, one or two per class (the golden cases' shapes).
MESSAGES: dict[str, bytes] = {
    "reservoir": (
        b'{"ts":"2024-06-15T08:00:00+08:00","seq":1042,"metrics":{"rain_5min_mm":0.5,'
        b'"rain_1h_mm":3.2,"rain_cum_mm":123.4,"level_m":1052.345,"battery_v":12.35}}'
    ),
    "reservoir (points)": (
        b'{"ts":"2024-06-15T08:00:00+08:00","metrics":{"level_m":1052.31,'
        b'"seepage_pressure_m.P1":12.84,"seepage_pressure_m.P2":9.57,'
        b'"seepage_pressure_m.P3":6.02,"seepage_flow_lps.WE1":0.42,"displacement_mm.D1":-1.3}}'
    ),
    "power_line": (
        b'{"ts":"2024-06-15T08:05:00+08:00","seq":88213,"metrics":{"conductor_temp_c":41.6,'
        b'"ice_thickness_mm":0,"tension_n":18450,"windage_deg":3.2,"sag_m":12.7,'
        b'"wind_speed_ms":4.8,"air_temp_c":24.1,"humidity_pct":78,"tilt_mm_per_m":1.2,'
        b'"battery_v":12.9}}'
    ),
    "charger (points+states)": (
        b'{"ts":"2024-06-15T08:04:00+08:00","seq":77,"metrics":{"power_w.1":58200,'
        b'"power_w.2":0,"voltage_v.1":750.0,"current_a.1":77.6,"soc_pct.1":63,'
        b'"energy_wh.1":3481200,"energy_wh.2":2950030},"states":{"status.0":"Available",'
        b'"status.1":"Charging","status.2":"Available"}}'
    ),
    "datacenter": (
        b'{"ts":1718409600000,"seq":35040,"metrics":{"facility_energy_kwh":48213377.5,'
        b'"it_energy_kwh":36587210.25,"facility_power_kw":5412.8,"it_power_kw":4127.3,'
        b'"racks_built":4000,"racks_in_service":2870}}'
    ),
}


def per_call_us(fn: Callable[[], object], number: int, repeat: int = 5) -> float:
    """CPU time of one call in µs: the best of `repeat` runs. CPU time rather than wall
    time because the machines this runs on are shared; the best run because noise
    only ever adds."""
    runs = timeit.repeat(fn, number=number, repeat=repeat, timer=time.process_time)
    return min(runs) / number * 1e6


def fastjsonschema_validator(schema: dict[str, Any]) -> Callable[[Any], object] | None:
    try:
        import fastjsonschema  # measurement only; not a dependency
    except ImportError:
        return None
    # fastjsonschema knows drafts 4/6/7; nothing in these schemas differs in draft 7
    # (`$defs` is reached by a plain JSON pointer).
    draft7 = {**schema, "$schema": "http://json-schema.org/draft-07/schema#"}
    validate: Callable[[Any], object] = fastjsonschema.compile(draft7)
    return validate


def measure(name: str, payload: bytes, n: int) -> tuple[float, float, float, float, float]:
    """(orjson, validate, decode, jsonschema, fastjsonschema) µs for one message."""
    cls = next(c for c in CLASSES if c.name == name)
    adapter = next(a for a in ADAPTERS if a.device_class is cls and a.channel == "telemetry")
    topic = Topic("gz", name, "dev-1", "telemetry")
    doc = orjson.loads(payload)
    adapter.decode(topic, payload, RECEIVED)  # must be accepted
    schema = json_schema(cls)
    validator = Draft202012Validator(schema)
    assert validator.is_valid(doc), name
    fast = fastjsonschema_validator(schema)
    parse = per_call_us(partial(orjson.loads, payload), n)
    check = per_call_us(partial(decode_document, cls, topic, doc), n)
    total = per_call_us(partial(adapter.decode, topic, payload, RECEIVED), n)
    js = per_call_us(partial(validator.is_valid, doc), max(n // 20, 200))
    fjs = per_call_us(partial(fast, doc), n) if fast else float("nan")
    return parse, check, total, js, fjs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=20000, help="calls per timing run")
    args = parser.parse_args()
    head = (
        f"{'message':<24}{'bytes':>6}{'orjson':>8}{'validate':>9}{'decode':>8}"
        f"{'valid.%':>8}{'jsonschema':>11}{'fastjs':>8}{'js/dec':>8}{'fjs/dec':>8}"
    )
    print("CPU µs per message (best of 5 runs)")
    print(head)
    print("-" * len(head))
    for label, payload in MESSAGES.items():
        parse, check, total, js, fjs = measure(label.split()[0], payload, args.number)
        print(
            f"{label:<24}{len(payload):>6}{parse:>8.2f}{check:>9.2f}{total:>8.2f}"
            f"{check / total:>8.0%}{js:>11.1f}{fjs:>8.2f}{js / total:>7.0f}x{fjs / total:>7.1f}x"
        )
    print(
        "\norjson: orjson.loads alone; validate: decode_document on the parsed document; "
        "decode: adapter.decode (both);\nvalid.%: validate ÷ decode; jsonschema / fastjs: "
        "validating the parsed document against the published schema (no parse)."
    )


if __name__ == "__main__":
    main()
