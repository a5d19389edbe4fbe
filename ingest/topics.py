"""Topic grammar `<prefix>/v1/<class>/<device_id>/<channel>` and device ids:
parsing, the rule a device id follows, and the subscription filter. Pure.

A worker subscribes to everything under the prefix (`<prefix>/#`), not to the
five-level pattern: a topic of the wrong depth would otherwise never reach the
worker, and vanish without a dead letter, a counter or a log line.
"""

from __future__ import annotations

import re
from typing import Final

from adapters import DecodeError, Topic

VERSION = "v1"
MAX_DEVICE_ID = 64
# Letters, digits and `- _ . :`, starting with a letter or digit, 1 to 64 characters:
# safe in a topic, a URL path, a file name, a CSV cell and HTML without escaping
# surprises (docs/devices.md).
DEVICE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
DEVICE_ID_RULE: Final = "1-64 characters: ASCII letters, digits and - _ . : (starting with a letter or digit)"


def subscription(prefix: str, group: str | None) -> str:
    """The filter a worker subscribes to; shared when `group` is set."""
    base = f"{prefix}/#"
    return f"$share/{group}/{base}" if group else base


def valid_device_id(device_id: str) -> bool:
    return DEVICE_ID.fullmatch(device_id) is not None


def check_device_id(device_id: str) -> None:
    """Raise DecodeError `bad_device_id` unless `device_id` follows the rule."""
    if DEVICE_ID.fullmatch(device_id) is None:
        shown = device_id if len(device_id) <= 80 else device_id[:77] + "..."
        raise DecodeError("bad_device_id", f"device id {shown!r} is not {DEVICE_ID_RULE}")


def parse(topic: str, prefix: str) -> Topic:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != prefix or parts[1] != VERSION:
        raise DecodeError(
            "bad_topic",
            f"{topic!r} is not {prefix}/{VERSION}/<class>/<device>/<channel> "
            f"({len(parts)} levels, expected 5)",
        )
    check_device_id(parts[3])
    return Topic(parts[0], parts[2], parts[3], parts[4])
