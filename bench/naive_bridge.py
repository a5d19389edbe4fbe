"""The floor: a typical hand-written bridge — paho-mqtt, json, one INSERT per message
in autocommit, acknowledging on receipt — draining the same queued session.
Usage: naive_bridge.py PORT DATABASE_URL COUNT. Prints the seconds it took."""

from __future__ import annotations

import json
import sys
import threading
import time

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

COLUMNS = {
    "reservoir": ("rain_5min_mm", "rain_1h_mm", "rain_cum_mm", "level_m", "battery_v"),
    "power_line": (
        "conductor_temp_c",
        "ice_thickness_mm",
        "tension_n",
        "windage_deg",
        "wind_speed_ms",
        "air_temp_c",
        "humidity_pct",
    ),
    "charger": ("energy_wh", "power_w", "current_a", "voltage_v"),
    "datacenter": (
        "facility_energy_kwh",
        "it_energy_kwh",
        "facility_power_kw",
        "it_power_kw",
        "racks_built",
        "racks_in_service",
    ),
}


def main() -> int:
    port, url, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    db = psycopg.connect(url, autocommit=True)
    done = threading.Event()
    seen = 0
    started = 0.0

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        nonlocal seen, started
        if not started:
            started = time.perf_counter()
        _, _, cls, dev, _ = msg.topic.split("/")
        doc = json.loads(msg.payload)
        cols = COLUMNS[cls]
        m = doc["metrics"]
        db.execute(
            f"INSERT INTO readings_{cls} (device_id, ts, point, seq, {', '.join(cols)}) "
            f"VALUES (%s, %s, '', %s, {', '.join(['%s'] * len(cols))}) ON CONFLICT DO NOTHING",
            (dev, doc["ts"], doc.get("seq"), *(m.get(c) for c in cols)),
        )
        seen += 1
        if seen >= count:
            done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive", clean_session=False)
    c.on_message = on_message
    c.on_connect = lambda cl, *a: cl.subscribe("gz/v1/+/+/+", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(3600)
    elapsed = time.perf_counter() - started
    c.disconnect()
    c.loop_stop()
    print(elapsed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
