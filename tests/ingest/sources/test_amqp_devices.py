"""Device users on the durable transport, on the real 3-node RabbitMQ cluster: the
commands `ingest durable-device` prints let a device publish and subscribe under its
own id, and refuse it another device's topics (as deploy/mosquitto/acl does)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingest.durable_users import device_commands, new_password
from ingest.localcluster import RabbitCluster
from tests.ingest.sources.test_amqp_source import ready_count


class Device:
    """A device's MQTT 3.1.1 connection with its own user name and password."""

    def __init__(self, port: int, device_id: str, password: str) -> None:
        self.refused: int | None = None
        self.closed = threading.Event()
        self.granted: list[int] = []
        self._subacked = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv311)
        c.username_pw_set(device_id, password)
        c.on_connect = self._connected
        c.on_disconnect = lambda *_a: self.closed.set()
        c.on_subscribe = self._subscribed
        self._up = threading.Event()
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _connected(self, _c: object, _u: object, _f: object, rc: paho.ReasonCode, _p: object) -> None:
        if rc.is_failure:
            self.refused = rc.value
            self.closed.set()
        self._up.set()

    def _subscribed(
        self, _c: object, _u: object, _mid: int, codes: list[paho.ReasonCode], _p: object
    ) -> None:
        self.granted = [c.value for c in codes]
        self._subacked.set()

    def wait_up(self) -> bool:
        """Whether the broker accepted the connection."""
        self._up.wait(10)
        return self.refused is None and not self.closed.is_set()

    def publish(self, topic: str) -> bool:
        """Whether the broker acknowledged (PUBACK) a QoS 1 message on `topic`."""
        info = self.client.publish(topic, b'{"v":1}', qos=1)
        info.wait_for_publish(5)
        return info.is_published()

    def subscribe(self, topic: str) -> list[int]:
        self._subacked.clear()
        self.client.subscribe(topic, qos=1)
        self._subacked.wait(5)
        return self.granted

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def ctl_all(rabbit: RabbitCluster, commands: list[list[str]]) -> None:
    for args in commands:
        out = rabbit.ctl(rabbit.nodes[0], *args)
        assert "Error" not in out, (args, out)


async def test_a_device_publishes_and_subscribes_under_its_own_id_only(
    rabbit: RabbitCluster, lane: tuple[str, str]
) -> None:
    prefix, queue = lane
    url, port = rabbit.nodes[0].amqp_url, rabbit.nodes[1].mqtt_port
    pw = {dev: new_password() for dev in (f"{prefix}-cp", f"{prefix}.st")}
    for dev, p in pw.items():
        await asyncio.to_thread(ctl_all, rabbit, device_commands(dev, p, prefix))
    cp, st = pw

    def session(device_id: str, password: str, steps: list[tuple[str, str]]) -> list[object]:
        d = Device(port, device_id, password)
        try:
            if not d.wait_up():
                return [("refused", d.refused)]
            out: list[object] = []
            for op, topic in steps:
                out.append(d.subscribe(topic) if op == "sub" else d.publish(topic))
            return out
        finally:
            d.close()

    # Its own topics: acknowledged; its own commands: granted at QoS 1
    own = [("pub", f"{prefix}/v1/charger/{cp}/telemetry"), ("pub", f"{prefix}/v1/charger/{cp}/status"),
           ("sub", f"{prefix}/v1/charger/{cp}/cmd/#")]  # fmt: skip
    assert await asyncio.to_thread(session, cp, pw[cp], own) == [True, True, [1]]
    # A `.` in a device id is `/` in the routing key, and matches no other character.
    dotted = [("pub", f"{prefix}/v1/reservoir/{st}/sl651")]
    assert await asyncio.to_thread(session, st, pw[st], dotted) == [True]
    assert await ready_count(url, queue) == 3

    # Another device's topics, and a command topic written by a device: refused
    # (RabbitMQ 3.10 closes the connection: no PUBACK), and nothing reaches the queue
    for device_id, topic in (
        (cp, f"{prefix}/v1/charger/{prefix}-other/telemetry"),
        (cp, f"{prefix}/v1/charger/{cp}/cmd/set"),
        (cp, f"{prefix}/v1/charger/{cp}/elsewhere"),
        (st, f"{prefix}/v1/reservoir/{prefix}xst/sl651"),  # st's `.` as another character
    ):
        assert await asyncio.to_thread(session, device_id, pw[device_id], [("pub", topic)]) == [False], topic
    assert await ready_count(url, queue) == 3
    other_cmd = await asyncio.to_thread(session, cp, pw[cp], [("sub", f"{prefix}/v1/charger/{st}/cmd/#")])
    assert other_cmd != [[1]]

    # A wrong password: CONNACK refused (3.1.1 code 4 or 5)
    assert (await asyncio.to_thread(session, cp, "wrong", []))[0][0] == "refused"  # type: ignore[index]


def test_the_command_prints_what_device_commands_gives() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "durable-device", "CP-1", "--password", "pw-1"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("INGEST_")},
        check=True,
    )
    assert "password pw-1" in done.stderr  # seen on the terminal when stdout goes to a shell
    assert done.stdout.splitlines() == [
        "rabbitmqctl add_user CP-1 pw-1",
        r"rabbitmqctl set_permissions -p / CP-1 '^mqtt\-subscription\-CP\-1qos[01]$' "
        r"'^(amq\.topic|mqtt\-subscription\-CP\-1qos[01])$' "
        r"'^(amq\.topic|mqtt\-subscription\-CP\-1qos[01])$'",
        r"rabbitmqctl set_topic_permissions -p / CP-1 amq.topic "
        r"'^gz\.v1\.[a-z_]+\.CP\-1\.(telemetry|sl651|ocpp|status)$' "
        r"'^gz\.v1\.[a-z_]+\.CP\-1\.cmd(\..+)?$'",
    ]
    bad = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "durable-device", "no spaces"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "device id 'no spaces'" in bad.stderr
