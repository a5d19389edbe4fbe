"""Device users on the durable transport's RabbitMQ nodes (docs/transport.md).

A plain Mosquitto lets a device publish only under its own id through
deploy/mosquitto/acl (`pattern write gz/v1/+/%u/telemetry`, ...). On RabbitMQ the
same rule is a user per device with permissions of its own: `device_commands` gives
the rabbitmqctl commands, `ingest durable-device DEVICE_ID` prints them.

- The MQTT plugin publishes into `amq.topic` with the topic as the routing key, each
  `/` made `.` (`gz/v1/charger/CP-1/telemetry` → `gz.v1.charger.CP-1.telemetry`; a `.`
  in a device id stays `.` on 3.10), and topic permissions match that routing key.
  The device id is written into the patterns literally (escaped), not as
  `{username}`, so an id's `.` cannot match another id's character.
- Write: `<prefix>/v1/<class>/<id>/{telemetry,sl651,ocpp,status}`; read (subscribe):
  `<prefix>/v1/<class>/<id>/cmd/#` — what the Mosquitto ACL allows.
- Resources: write on `amq.topic`; configure, write and read on the device's own
  subscription queues (`mqtt-subscription-<client id>qos0|1`), so the device's MQTT
  client id must be its device id.
"""

from __future__ import annotations

import re
import secrets
import shlex

from ingest.topics import DEVICE_ID_RULE, valid_device_id

__all__ = ["PUBLISH_CHANNELS", "device_commands", "key_pattern", "new_password", "shell"]

PUBLISH_CHANNELS = ("telemetry", "sl651", "ocpp", "status")


def key_pattern(topic_part: str) -> str:
    """A regular expression for the routing key RabbitMQ's MQTT plugin makes of this
    part of a topic: each `/` becomes `.`; a `.` stays `.` on 3.10 (seen on 3.10.8) and
    becomes `/` on releases that swap the two, so it matches either."""
    return "".join({"/": r"\.", ".": "[./]"}.get(ch, re.escape(ch)) for ch in topic_part)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def device_commands(device_id: str, password: str, prefix: str = "gz", vhost: str = "/") -> list[list[str]]:
    """The rabbitmqctl arguments (without `rabbitmqctl`) that create the device's user
    and let it publish and subscribe under its own id only. ValueError, naming the
    input, for an id outside the device id rule or an empty password."""
    if not valid_device_id(device_id):
        raise ValueError(f"device id {device_id!r}: {DEVICE_ID_RULE}")
    if not password:
        raise ValueError("the password is empty")
    seg = key_pattern(device_id)
    pre = key_pattern(prefix)
    queues = re.escape(f"mqtt-subscription-{device_id}") + "qos[01]"
    write = rf"^{pre}\.v1\.[a-z_]+\.{seg}\.({'|'.join(PUBLISH_CHANNELS)})$"
    own = rf"^(amq\.topic|{queues})$"
    read = rf"^{pre}\.v1\.[a-z_]+\.{seg}\.cmd(\..+)?$"
    return [
        ["add_user", device_id, password],
        ["set_permissions", "-p", vhost, device_id, f"^{queues}$", own, own],
        ["set_topic_permissions", "-p", vhost, device_id, "amq.topic", write, read],
    ]


def shell(args: list[str], ctl: str = "rabbitmqctl") -> str:
    """One command line, quoted for a POSIX shell."""
    return " ".join(shlex.quote(a) for a in [ctl, *args])
