"""Overhead transmission-line monitoring terminals (class `power_line`)."""

from adapters._base import DeviceClass, MetaField, Metric
from adapters._jsonv1 import json_adapter

POWER_LINE = DeviceClass(
    name="power_line",
    title="Overhead-line monitoring terminal",
    expected_interval_s=1800,
    online_s=5400,  # 3 x the 30-min period
    metrics=(
        Metric("conductor_temp_c", "°C", -50, 250, "conductor temperature"),
        Metric("ice_thickness_mm", "mm", 0, 200, "equivalent ice thickness"),
        Metric("tension_n", "N", 0, 1000000, "hanging load / tension"),
        Metric("windage_deg", "°", -90, 90, "windage (swing) angle"),
        Metric("sag_m", "m", 0, 200, "conductor sag"),
        Metric("wind_speed_ms", "m/s", 0, 75, "10-minute average wind speed"),
        Metric("air_temp_c", "°C", -50, 60, "air temperature"),
        Metric("humidity_pct", "%", 0, 100, "relative humidity"),
        Metric("tilt_mm_per_m", "mm/m", -100, 100, "tower tilt"),
        Metric("battery_v", "V", 0, 30, "supply voltage"),
    ),
    meta=(
        MetaField("line", str, "transmission line name"),
        MetaField("tower", str, "tower number"),
        MetaField("design_ice_mm", float, "design ice thickness of the zone", 0, 100),
        MetaField("voltage_kv", float, "line voltage class", 0, 1500),
    ),
)

ADAPTER = json_adapter(POWER_LINE)
