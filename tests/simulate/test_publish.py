"""A short real publish through a real Mosquitto, counted by a real subscriber."""

import threading
from collections import Counter

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.simulate.cli import main
from ingest.simulate.sinks import BAD_PROPERTY


def test_publish_reaches_a_subscriber(broker: int) -> None:
    got: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    subscribed = threading.Event()
    all_arrived = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got[msg.topic.split("/")[4]] += 1  # only paho's network thread writes
        for key, value in getattr(msg.properties, "UserProperty", []):
            if key == BAD_PROPERTY:
                bad[value] += 1
        if sum(got.values()) >= 3000:
            all_arrived.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="counter", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker)
    sub.subscribe("gz/v1/+/+/+", qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        rc = main(["--port", str(broker), "--speed", "0", "--messages", "3000",
                   "--bad-share", "0.05", "--quiet", "--client-id", "sim-test"])
        assert rc == 0
        assert all_arrived.wait(10)  # the subscriber may lag the publisher's acks a little
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert sum(got.values()) == 3000
    assert got["status"] == 451  # retained births, one per device
    assert sum(bad.values()) > 0
