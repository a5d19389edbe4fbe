"""The generated parts of docs/devices.md, from the class declarations: per class its
metrics (unit, range), states, meta hints and an example message with the lines that
publish it; the native formats' example frames.

`python -m adapters.docs --write` rewrites the generated sections (between
`<!-- BEGIN GENERATED name -->` and `<!-- END GENERATED name -->`); `--check` exits
non-zero when docs/devices.md differs from what the declarations give
(tests/adapters/test_docs.py runs it, and decodes every example).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from adapters import CLASSES
from adapters._base import COMMON_META, DeviceClass, MetaField, Metric

DOC = Path(__file__).resolve().parents[1] / "docs" / "devices.md"
_SECTION = re.compile(r"(<!-- BEGIN GENERATED (\S+) -->\n)(.*?)(<!-- END GENERATED \2 -->)", re.S)
DEVICE = {"reservoir": "res-0001", "power_line": "PL-520500-N087", "charger": "CP-520100-0007",
          "datacenter": "DC-GUIAN-01"}  # fmt: skip

# Native frames, as devices send them (the golden cases tests/adapters/testdata/
# sl651/domain_example and ocpp/meter_multi_measurand); their times are fixed, so
# a broker-side replay of them today is refused as too_old: send your own times.
SL651_EXAMPLE = (
    "7E7E010052010001123432002B020001240615080005F1F100520100014BF0F02406150800201900"
    "000526190012343B230105234538121235038AEF"
)
OCPP_EXAMPLE = (
    '[2, "19223201", "MeterValues", {"connectorId": 2, "transactionId": 4711, "meterValue": '
    '[{"timestamp": "2024-06-15T00:05:00Z", "sampledValue": [{"value": "1523780", '
    '"measurand": "Energy.Active.Import.Register", "unit": "Wh"}, {"value": "7.2", '
    '"measurand": "Power.Active.Import", "unit": "kW"}]}]}]'
)


def _num(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 else f"{x:.0f}"


def example_value(m: Metric) -> float:
    """A value inside the metric's range, a quarter of the way up, with two decimals."""
    return round(m.minimum + (m.maximum - m.minimum) / 4, 2)


def example(cls: DeviceClass, ts: str) -> bytes:
    """A complete v1 message of `cls`: every metric once (no points)."""
    doc = {"ts": ts, "seq": 1, "metrics": {m.name: example_value(m) for m in cls.metrics}}
    return orjson.dumps(doc)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _span(f: MetaField) -> str:
    if f.choices:
        return ", ".join(map(str, f.choices))
    if f.minimum is not None and f.maximum is not None:
        return f"{_num(f.minimum)} … {_num(f.maximum)}"
    return ""


def class_section(cls: DeviceClass) -> str:
    dev = DEVICE.get(cls.name, f"{cls.name}-1")
    topic = f"gz/v1/{cls.name}/{dev}"
    metrics = _table(
        ["metric", "unit", "range", "several points", "description"],
        [
            [f"`{m.name}`", m.unit, f"{_num(m.minimum)} … {_num(m.maximum)}", "yes" if m.pointed else "",
             m.description + (" (a register: it only grows)" if m.register else "")]
            for m in cls.metrics
        ],
    )  # fmt: skip
    parts = [f"Reports every {cls.expected_interval_s} s; online while it reported within "
             f"{cls.online_s} s (`rollup.online_{cls.name}_s`).\n\n", metrics]  # fmt: skip
    if cls.states:
        parts.append("\n" + _table(["state", "values", "several points", "description"],
                                   [[f"`{s.name}`", ", ".join(s.values), "yes" if s.pointed else "",
                                     s.description] for s in cls.states]))  # fmt: skip
    meta = COMMON_META + cls.meta
    hints = [[f"`{f.name}`", f.kind.__name__, _span(f), f.description] for f in meta]
    parts.append("\n" + _table(["meta hint", "kind", "range or values", "description"], hints))
    body = example(cls, "TS").decode()
    shown = body.replace("TS", "2024-06-15T08:00:00+08:00")
    shell = body.replace('"TS"', '"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'"')
    py = body.replace('"TS"', "NOW")
    parts.append(
        f"\nExample: topic `{topic}/telemetry`\n\n```json\n{shown}\n```\n\n"
        f"```sh\nmosquitto_pub -h BROKER -p 1883 -V mqttv5 -q 1 -i {dev} -u {dev} -P PASSWORD \\\n"
        f"  -t {topic}/telemetry -m '{shell}'\n```\n\n"
        "```python\nimport json\nfrom datetime import UTC, datetime\nimport paho.mqtt.client as mqtt\n\n"
        f'c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="{dev}", protocol=mqtt.MQTTv5)\n'
        f'c.username_pw_set("{dev}", "PASSWORD")\n'
        f'c.will_set("{topic}/status", "offline", qos=1, retain=True)  # last will\n'
        'c.connect("BROKER", 1883)\nc.loop_start()\n'
        f'c.publish("{topic}/status", "online", qos=1, retain=True)  # birth\n'
        "NOW = datetime.now(UTC).isoformat()\n"
        f'c.publish("{topic}/telemetry", json.dumps({py}), qos=1).wait_for_publish()\n'
        "```\n"
    )
    return "".join(parts)


def native_section(name: str) -> str:
    if name == "sl651":
        return (
            "Topic `gz/v1/reservoir/<station address>/sl651`, the frame's bytes as sent "
            "(or their hex text):\n\n"
            f"```sh\necho {SL651_EXAMPLE} | xxd -r -p | \\\n"
            "  mosquitto_pub -h BROKER -q 1 -u 0052010001 -P PASSWORD "
            "-t gz/v1/reservoir/0052010001/sl651 -s\n```\n"
        )
    return (
        "Topic `gz/v1/charger/<charge point id>/ocpp`, one OCPP-J frame (a CALL) as text:\n\n"
        f"```sh\nmosquitto_pub -h BROKER -q 1 -u CP-GY-0001 -P PASSWORD "
        f"-t gz/v1/charger/CP-GY-0001/ocpp \\\n  -m '{OCPP_EXAMPLE}'\n```\n"
    )


def sections() -> dict[str, str]:
    out = {f"class-{c.name}": class_section(c) for c in CLASSES}
    out["native-sl651"] = native_section("sl651")
    out["native-ocpp"] = native_section("ocpp")
    return out


def render(text: str) -> str:
    """`text` with every generated section replaced by what the declarations give."""
    gen = sections()

    def fill(m: re.Match[str]) -> str:
        if m[2] not in gen:
            raise KeyError(f"docs/devices.md: no generator for section {m[2]!r}")
        return m[1] + gen[m[2]] + m[4]

    return _SECTION.sub(fill, text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m adapters.docs", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated sections")
    mode.add_argument("--check", action="store_true", help="fail if docs/devices.md is stale")
    args = p.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if args.write:
        DOC.write_text(new, encoding="utf-8")
        return 0
    if new != text:
        print("docs/devices.md is stale: run python -m adapters.docs --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
