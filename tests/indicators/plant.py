"""A running service with tokens, and the known fleet the rollup tests assert on."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import orjson

from ingest import config
from ingest.config import hash_token
from tests.services import Broker

READ_TOKEN = "read-secret"
ADMIN_TOKEN = "admin-secret"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_cfg(broker: Broker, db_url: str, tmp: Path, window_days: float = 1.0) -> config.Config:
    path = tmp / "ingest.toml"
    path.write_text(
        f"""
[http]
port = 0
tokens = [
  {{ name = "progress", role = "read", sha256 = "{hash_token(READ_TOKEN)}" }},
  {{ name = "ops", role = "admin", sha256 = "{hash_token(ADMIN_TOKEN)}" }},
]
[rollup]
interval_s = 3600
pue_window_days = {window_days}
"""
    )
    return config.load(
        path,
        env={
            "INGEST_MQTT_URL": broker.url,
            "INGEST_DATABASE_URL": db_url,
            "INGEST_MQTT_CLIENT_ID": "rollup-test",
            "INGEST_BATCH_MAX_AGE_MS": "50",
        },
    )


PROVISION_CSV = """\
device_id,class,region,site,name,flood_limit_level_m,racks_built,demo_project,pue_category
res-a,reservoir,520500,甲水库,,1052.5,,,
res-b,reservoir,520500,乙水库,,,,,
res-c,reservoir,520100,丙水库,,,,,
pl-1,power_line,520500,,,,,,
dc-2,datacenter,guian,二期,,,500,yes,1
"""


def telemetry(
    cls: str, dev: str, ts: datetime, metrics: dict[str, float], **meta: object
) -> tuple[str, bytes]:
    doc: dict[str, object] = {"ts": ts.isoformat(), "metrics": metrics}
    if meta:
        doc["meta"] = meta
    return f"gz/v1/{cls}/{dev}/telemetry", orjson.dumps(doc)


def fleet_messages(now: datetime) -> list[tuple[str, bytes]]:
    """The known fleet. Expected figures are in test_rollup.py."""
    t0 = now.replace(microsecond=0) - timedelta(hours=3)
    recent = now.replace(microsecond=0) - timedelta(minutes=10)  # within every online window
    m = [
        # res-a: automatic report with level and rain -> automated
        telemetry("reservoir", "res-a", t0, {"level_m": 1050.0, "rain_1h_mm": 0.5}, region="520100"),
        # res-b: level only -> built, not automated; above its hinted flood-limit level
        telemetry("reservoir", "res-b", recent, {"level_m": 980.0}, flood_limit_level_m=975.0),
        # res-d: not provisioned, hints Guiyang, level and rain -> automated but unprovisioned
        telemetry("reservoir", "res-d", t0, {"level_m": 700.0, "rain_5min_mm": 0.0}, region="520100"),
        # pl-1 hints Liupanshui, provisioned in Bijie: the provisioned region wins
        # ... and its ice (17 mm) is above 80 % of its design ice (20 mm)
        telemetry(
            "power_line",
            "pl-1",
            recent,
            {"conductor_temp_c": 20.0, "ice_thickness_mm": 17.0},
            region="520200",
            design_ice_mm=20.0,
        ),
        telemetry("charger", "ch-1", t0, {"power_w": 7000.0}, region="520100"),
        # ch-1's connector 2 is faulted
        (
            "gz/v1/charger/ch-1/telemetry",
            orjson.dumps(
                {
                    "ts": t0.isoformat(),
                    "metrics": {},
                    "states": {"status.1": "Charging", "status.2": "Faulted"},
                }
            ),
        ),
        telemetry("charger", "ch-2", t0, {"power_w": 0.0}, region="520100"),
        telemetry("charger", "ch-3", t0, {"power_w": 0.0}),  # no region: province only
    ]
    # dc-1 (category 1): hour A 1300/1000 = 1.30, hour B 700/400 = 1.75.
    # Mean of ratios 1.525; energy-weighted 2000/1400 = 1.4286.
    for i, (f, it) in enumerate(((10000.0, 5000.0), (11300.0, 6000.0), (12000.0, 6400.0))):
        extra = {"racks_built": 1000.0, "racks_in_service": 700.0} if i == 2 else {}
        m.append(telemetry("datacenter", "dc-1", t0 + timedelta(hours=i),
                           {"facility_energy_kwh": f, "it_energy_kwh": it, **extra},
                           region="guian", pue_category=1))  # fmt: skip
    # dc-2 (category 1, demonstration project): the register resets between samples 2 and 3.
    for i, (f, it) in enumerate(((500.0, 400.0), (600.0, 480.0), (10.0, 5.0), (60.0, 45.0))):
        extra = {"racks_built": 9999.0, "racks_in_service": 250.0} if i == 3 else {}
        m.append(telemetry("datacenter", "dc-2", t0 + timedelta(minutes=40 * i),
                           {"facility_energy_kwh": f, "it_energy_kwh": it, **extra}))  # fmt: skip
    # dc-3 (category 2, PUE 3): never mixed into the category-1 figure.
    for i, (f, it) in enumerate(((0.0, 0.0), (300.0, 100.0))):
        m.append(telemetry("datacenter", "dc-3", t0 + timedelta(hours=i),
                           {"facility_energy_kwh": f, "it_energy_kwh": it},
                           region="guian", pue_category=2))  # fmt: skip
    return m
