"""Provisioning records: validation (pure). Writing them is ingest.registry's.

A record is {device_id, class, region, site, name, attributes}. Attributes are the
class's declared meta fields (adapters) plus the provisioning-only rack counts of a
data centre; they win over what devices hint in their payloads.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from adapters import CLASSES, MetaField
from ingest.indicators.regions import PROVINCE, region_keys
from ingest.topics import DEVICE_ID_RULE, valid_device_id

CLASS_INDEX: Final = {c.name: c for c in CLASSES}
EXTRA: Final[Mapping[str, tuple[MetaField, ...]]] = {
    "datacenter": (
        MetaField("racks_built", float, "standard racks built", 0, 1e6),
        MetaField("racks_in_service", float, "standard racks in service", 0, 1e6),
    ),
}
_COMMON = ("region", "site", "name")


class ProvisioningError(ValueError):
    """A record is invalid; `field` names the offending field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True, slots=True)
class Record:
    device_id: str
    device_class: str
    region: str | None = None
    site: str | None = None
    name: str | None = None
    attributes: Mapping[str, str | float | int] = field(default_factory=dict)


def attribute_fields(device_class: str) -> dict[str, MetaField]:
    cls = CLASS_INDEX[device_class]
    fields = {f.name: f for f in cls.meta if f.name not in _COMMON}
    fields.update({f.name: f for f in EXTRA.get(device_class, ())})
    return fields


def _attr(where: str, f: MetaField, value: Any) -> str | float | int:
    if f.kind is str:
        if not isinstance(value, str):
            raise ProvisioningError(where, f"expected text, got {value!r}")
        out: str | float | int = value
    else:
        if isinstance(value, str):
            try:
                value = float(value) if f.kind is float else int(value)
            except ValueError:
                raise ProvisioningError(where, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProvisioningError(where, f"expected a number, got {value!r}")
        if f.kind is int and value != int(value):
            raise ProvisioningError(where, f"expected an integer, got {value!r}")
        out = int(value) if f.kind is int else float(value)
        if (f.minimum is not None and out < f.minimum) or (f.maximum is not None and out > f.maximum):
            raise ProvisioningError(where, f"{out} outside {f.minimum}..{f.maximum}")
    if f.choices and out not in f.choices:
        raise ProvisioningError(where, f"expected one of {', '.join(map(str, f.choices))}, got {out!r}")
    return out


def _opt_text(where: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 200 or "\x00" in value:
        raise ProvisioningError(where, "expected text of at most 200 characters")
    return value


def validate(doc: Any, where: str = "record") -> Record:
    if not isinstance(doc, dict):
        raise ProvisioningError(where, "expected an object")
    known = {"device_id", "class", "region", "site", "name", "attributes"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ProvisioningError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(known))})")
    dev = doc.get("device_id")
    if not isinstance(dev, str) or not valid_device_id(dev):
        # the rule of the topics: a device provisioned under any other id could never report
        raise ProvisioningError(f"{where}.device_id", f"expected {DEVICE_ID_RULE}, got {dev!r}")
    cls = doc.get("class")
    if cls not in CLASS_INDEX:
        raise ProvisioningError(f"{where}.class", f"expected one of {', '.join(CLASS_INDEX)}, got {cls!r}")
    region = _opt_text(f"{where}.region", doc.get("region"))
    if region is not None:
        region = "guian" if region.lower() == "guian" else region
        if region not in region_keys() or region == PROVINCE:
            raise ProvisioningError(
                f"{where}.region", f"{region!r} is not a prefecture code (GB/T 2260) or 'guian'"
            )
    attrs_in = doc.get("attributes") or {}
    if not isinstance(attrs_in, dict):
        raise ProvisioningError(f"{where}.attributes", "expected an object")
    fields = attribute_fields(str(cls))
    attrs: dict[str, str | float | int] = {}
    for key, value in attrs_in.items():
        if key not in fields:
            raise ProvisioningError(
                f"{where}.attributes.{key}", f"not an attribute of {cls} (known: {', '.join(sorted(fields))})"
            )
        if value is None or value == "":
            continue
        attrs[key] = _attr(f"{where}.attributes.{key}", fields[key], value)
    return Record(
        dev, str(cls), region, _opt_text(f"{where}.site", doc.get("site")),
        _opt_text(f"{where}.name", doc.get("name")), attrs,
    )  # fmt: skip


def parse_csv(text: str) -> list[Record]:
    """CSV with a header: device_id, class, region, site, name, then attribute columns
    named after the attribute (empty cells are not set). Errors name the line."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "device_id" not in reader.fieldnames or "class" not in reader.fieldnames:
        raise ProvisioningError("csv", "the header must name at least device_id and class")
    out = []
    for row in reader:
        where = f"csv line {reader.line_num}"
        if None in row:
            raise ProvisioningError(where, "more cells than header columns")
        doc: dict[str, Any] = {k: row.get(k) for k in ("device_id", "class", "region", "site", "name")}
        doc["attributes"] = {k: v for k, v in row.items() if k not in doc and v not in (None, "")}
        out.append(validate(doc, where))
    return out


def check_unique(records: Sequence[Record]) -> None:
    seen: set[str] = set()
    for i, r in enumerate(records):
        if r.device_id in seen:
            raise ProvisioningError(f"record[{i}].device_id", f"{r.device_id!r} appears twice")
        seen.add(r.device_id)
