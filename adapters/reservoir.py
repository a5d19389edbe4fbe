"""Small-reservoir rain/water-regime and dam-safety stations (class `reservoir`).

Ranges follow ../shared/plan/DOMAIN.md (marked there as sensible defaults).
"""

from adapters._base import DeviceClass, MetaField, Metric
from adapters._jsonv1 import json_adapter

RESERVOIR = DeviceClass(
    name="reservoir",
    title="Small-reservoir monitoring station",
    expected_interval_s=3600,  # hourly on the hour; every 5 min in rain
    # DOMAIN.md: automated once it sent an automatic report with level and rain
    automation=(("level_m",), ("rain_5min_mm", "rain_1h_mm", "rain_cum_mm")),
    metrics=(
        Metric("rain_5min_mm", "mm", 0, 25.4, "rainfall in the last 5 minutes"),
        Metric("rain_1h_mm", "mm", 0, 150, "rainfall in the last hour"),
        Metric("rain_cum_mm", "mm", 0, 100000, "cumulative rainfall register", register=True),
        Metric("level_m", "m", -500, 9000, "reservoir water level above sea level"),
        Metric("seepage_pressure_m", "m", -10, 300, "seepage pressure head", pointed=True),
        Metric("seepage_flow_lps", "L/s", 0, 10000, "seepage flow", pointed=True),
        Metric("displacement_mm", "mm", -2000, 2000, "surface displacement", pointed=True),
        Metric("battery_v", "V", 0, 30, "supply voltage"),
    ),
    meta=(
        MetaField("flood_limit_level_m", float, "flood-limit level 汛限水位 (m a.s.l.)", -500, 9000),
        MetaField("design_flood_level_m", float, "design flood level (m a.s.l.)", -500, 9000),
        MetaField("dead_level_m", float, "dead water level (m a.s.l.)", -500, 9000),
        MetaField("reservoir_code", str, "reservoir register code"),
    ),
)

ADAPTER = json_adapter(RESERVOIR)
