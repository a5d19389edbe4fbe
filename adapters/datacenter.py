"""Data-centre energy meters (class `datacenter`)."""

from adapters._base import DeviceClass, MetaField, Metric
from adapters._jsonv1 import json_adapter

DATACENTER = DeviceClass(
    name="datacenter",
    title="Data-centre energy meter",
    expected_interval_s=900,  # registers every 15 min
    online_s=2700,  # 3 x the 15-min register report
    metrics=(
        Metric("facility_energy_kwh", "kWh", 0, 1e12, "total facility energy register", True),
        Metric("it_energy_kwh", "kWh", 0, 1e12, "IT energy register", register=True),
        Metric("facility_power_kw", "kW", 0, 1e6, "total facility power"),
        Metric("it_power_kw", "kW", 0, 1e6, "IT power"),
        Metric("racks_built", "racks", 0, 1e6, "standard racks built (2.5 kW each)"),
        Metric("racks_in_service", "racks", 0, 1e6, "standard racks in service"),
    ),
    meta=(
        MetaField(
            "pue_category",
            int,
            "Green Grid PUE category: IT metered at UPS (1), PDU (2) or IT input (3)",
            choices=(1, 2, 3),
        ),
        MetaField("demo_project", str, "designated demonstration project (yes/no)", choices=("yes", "no")),
        MetaField("operator", str, "operator name"),
    ),
)

ADAPTER = json_adapter(DATACENTER)
