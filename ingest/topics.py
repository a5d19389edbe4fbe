"""Topic grammar `<prefix>/v1/<class>/<device_id>/<channel>`: parsing and the
subscription filter. Pure."""

from __future__ import annotations

from adapters import DecodeError, Topic

VERSION = "v1"
MAX_DEVICE_ID = 64


def subscription(prefix: str, group: str | None) -> str:
    """The filter a worker subscribes to; shared when `group` is set."""
    base = f"{prefix}/{VERSION}/+/+/+"
    return f"$share/{group}/{base}" if group else base


def parse(topic: str, prefix: str) -> Topic:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != prefix or parts[1] != VERSION:
        raise DecodeError("bad_topic", f"{topic!r} is not {prefix}/{VERSION}/<class>/<device>/<channel>")
    device_id = parts[3]
    if not device_id or len(device_id) > MAX_DEVICE_ID or not device_id.isprintable():
        raise DecodeError("bad_topic", f"bad device id in {topic!r}")
    return Topic(parts[0], parts[2], device_id, parts[4])
