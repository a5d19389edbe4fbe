"""The operators' dashboards, as code. `python -m grafana.generate` writes them to
grafana/dashboards/*.json; a test checks that the committed JSON agrees.

Per-device time series come from PostgreSQL/TimescaleDB (time-bucketed; the hourly
continuous aggregates at coarse intervals), fleet aggregates from Prometheus, whose
series are bounded by class and region (see docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import bargauge, dashboard, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import piechart as pm

from grafana.sdk import PG, PROM, Sql, Thresholds, bucketed, prom

TAGS = ["gz-infra"]
PROVINCE = "520000"


def _board(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("Dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(False)
        )
    )


def _by_indicator(selector: str) -> str:
    """One series per indicator, whichever worker exported it (each runs the rollup)."""
    return f"max by (indicator) ({selector})"


def _region_sql(cls: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable("region")
        .label("Region")
        .datasource(PG)
        .query(f"SELECT DISTINCT region FROM devices WHERE class = '{cls}' AND region IS NOT NULL ORDER BY 1")
        .multi(True)
        .include_all(True)
        .current(dm.VariableOption(text="All", value="$__all", selected=True))
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
    )


def _region_prom(metric: str = "plan_indicator_value") -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable("region")
        .label("Region")
        .datasource(PROM)
        .query(f"label_values({metric}, region)")
        .current(dm.VariableOption(text=PROVINCE, value=PROVINCE, selected=True))
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def _point_panel(
    title: str,
    unit: str,
    column: str,
    metric: str = "r.device_id || CASE WHEN r.point = '' THEN '' ELSE ':' || r.point END",
    where: str = "true",
) -> timeseries.Panel:
    """A reservoir dam-safety quantity per device and sensor point, half-width."""
    return (
        timeseries.Panel()
        .title(title)
        .unit(unit)
        .height(8)
        .span(12)
        .with_target(
            Sql(
                bucketed(
                    "reservoir",
                    f"max(r.{column})",
                    f"max(r.{column}_max)",
                    metric=metric,
                    where=where,
                    present=column,
                )
            )
        )
    )


def _fleet_online(cls: str, title: str) -> timeseries.Panel:
    """Devices online against devices built, per region (Prometheus, from the rollup)."""
    return (
        timeseries.Panel()
        .title(title)
        .description(
            "From the rollup: built = reported at least once; online = reported within the "
            "class's expected interval."
        )
        .unit("short")
        .height(8)
        .span(12)
        .with_target(
            prom(
                f'max by (region) (fleet_devices_online{{class="{cls}", region=~"$region"}})',
                "online {{region}}",
                "A",
            )
        )
        .with_target(
            prom(
                f'max by (region) (fleet_devices_built{{class="{cls}", region=~"$region"}})',
                "built {{region}}",
                "B",
            )
        )
    )


# --- Plan progress -----------------------------------------------------------------


def plan_progress() -> dashboard.Dashboard:
    indicator = (
        dashboard.QueryVariable("indicator")
        .label("Indicator")
        .datasource(PROM)
        .query("label_values(plan_indicator_value, indicator)")
        .multi(True)
        .include_all(True)
        .current(dm.VariableOption(text="All", value="$__all", selected=True))
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
    )
    progress = (
        bargauge.Panel()
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .unit("percentunit")
        .min(0)
        .max(1)
        .thresholds(Thresholds("red", (0.5, "orange"), (0.9, "yellow"), (1.0, "green")))
        .height(10)
        .span(12)
    )
    return (
        _board(
            "gz-plan-progress",
            "Plan progress",
            "Every indicator of the New Infrastructure plan that the fleet measures, against its "
            "2022 and 2024 targets, for the province or one prefecture.",
        )
        .with_variable(_region_prom())
        .with_variable(indicator)
        .with_row(dashboard.Row("Progress against the targets ($region)"))
        .with_panel(
            progress.title("Progress towards the 2024 target")
            .description("value ÷ target; for 'below' indicators (PUE) target ÷ value. 100% = met.")
            .with_target(
                prom(
                    _by_indicator('plan_indicator_progress_ratio{region="$region", year="2024"}'),
                    "{{indicator}}",
                )
            )
        )
        .with_panel(
            bargauge.Panel()
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .orientation(common.VizOrientation.HORIZONTAL)
            .unit("percentunit")
            .min(0)
            .max(1)
            .thresholds(Thresholds("red", (0.5, "orange"), (0.9, "yellow"), (1.0, "green")))
            .height(10)
            .span(12)
            .title("Progress towards the 2022 target")
            .with_target(
                prom(
                    _by_indicator('plan_indicator_progress_ratio{region="$region", year="2022"}'),
                    "{{indicator}}",
                )
            )
        )
        .with_panel(
            table.Panel()
            .title("Indicators: value and targets")
            .description(
                "Current value with the 2022 and 2024 targets; 'interim' marks a PUE over less "
                "than 12 months."
            )
            .height(10)
            .span(24)
            .with_target(
                prom(_by_indicator('plan_indicator_value{region="$region"}'), ref_id="A", instant=True)
            )
            .with_target(
                prom(
                    _by_indicator('plan_indicator_target{region="$region", year="2022"}'),
                    ref_id="B",
                    instant=True,
                )
            )
            .with_target(
                prom(
                    _by_indicator('plan_indicator_target{region="$region", year="2024"}'),
                    ref_id="C",
                    instant=True,
                )
            )
            .with_target(
                prom(_by_indicator('plan_indicator_interim{region="$region"}'), ref_id="D", instant=True)
            )
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(
                dm.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {
                            "Time": True,
                            "__name__": True,
                            "job": True,
                            "instance": True,
                            "year": True,
                            "region": True,
                        },
                        "renameByName": {
                            "Value #A": "value",
                            "Value #B": "target 2022",
                            "Value #C": "target 2024",
                            "Value #D": "interim",
                        },
                    },
                )
            )
        )
        .with_row(dashboard.Row("History ($region)"))
        .with_panel(
            timeseries.Panel()
            .title("$indicator")
            .repeat("indicator")
            .repeat_direction("h")
            .max_per_row(3)
            .height(8)
            .span(8)
            .with_target(prom('max(plan_indicator_value{region="$region", indicator="$indicator"})', "value"))
            .with_target(
                prom(
                    'max by (year) (plan_indicator_target{region="$region", indicator="$indicator"})',
                    "target {{year}}",
                    "B",
                )
            )
            .override_by_regexp(
                "target.*",
                [
                    dm.DynamicConfigValue(
                        id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                    ),
                ],
            )
        )
        .with_row(dashboard.Row("Prefectures"))
        .with_panel(
            table.Panel()
            .title("Progress towards the 2024 target, by region")
            .height(12)
            .span(24)
            .unit("percentunit")
            .with_target(
                prom('max by (indicator, region) (plan_indicator_progress_ratio{year="2024"})', instant=True)
            )
            .with_transformation(
                dm.DataTransformerConfig(
                    id_val="groupingToMatrix",
                    options={"columnField": "indicator", "rowField": "region", "valueField": "Value"},
                )
            )
        )
    )


# --- Reservoirs -------------------------------------------------------------------

_FLOOD = "(d.meta ->> 'flood_limit_level_m')::float8"


def reservoirs() -> dashboard.Dashboard:
    return (
        _board(
            "gz-reservoirs",
            "Reservoirs",
            "Small-reservoir rain/water-regime and dam-safety stations: levels against each "
            "reservoir's flood-limit level (registry metadata), rainfall, reporting, dam safety.",
        )
        .with_variable(_region_sql("reservoir"))
        .with_panel(
            timeseries.Panel()
            .title("Level above the flood-limit level (m)")
            .description(
                "Reservoir level minus its flood-limit level 汛限水位; above 0 the reservoir is "
                "over its flood-limit level. Reservoirs without a flood-limit level are left out."
            )
            .unit("m")
            .height(9)
            .span(16)
            .thresholds(Thresholds("green", (0, "red")))
            .thresholds_style(
                cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE_AND_AREA)
            )
            .with_target(
                Sql(
                    bucketed(
                        "reservoir",
                        f"max(r.level_m) - {_FLOOD}",
                        f"max(r.level_m_max) - {_FLOOD}",
                        where=f"r.point = '' AND {_FLOOD} IS NOT NULL",
                        group=_FLOOD,
                    )
                )
            )
        )
        .with_panel(
            table.Panel()
            .title("Latest level against the flood-limit level")
            .height(9)
            .span(8)
            .with_target(
                Sql(
                    f"""
                SELECT d.device_id AS station, d.name, d.region, l.level_m,
                       {_FLOOD} AS flood_limit_m, l.level_m - {_FLOOD} AS above_m, l.ts AS at
                FROM devices d
                CROSS JOIN LATERAL (
                    SELECT r.ts, r.level_m FROM readings_reservoir r
                    WHERE r.device_id = d.device_id AND r.point = '' AND r.level_m IS NOT NULL
                      AND $__timeFilter(r.ts)
                    ORDER BY r.ts DESC LIMIT 1) l
                WHERE d.class = 'reservoir' AND d.region IN ($region)
                ORDER BY above_m DESC NULLS LAST, station
                LIMIT 200""",
                    "table",
                )
            )
            .override_by_name(
                "above_m",
                [
                    dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
                    dm.DynamicConfigValue(id_val="thresholds", value=Thresholds("green", (0, "red")).build()),
                ],
            )
        )
        .with_panel(
            timeseries.Panel()
            .title("Rainfall, 1 h (mm)")
            .unit("lengthmm")
            .height(8)
            .span(12)
            .draw_style(common.GraphDrawStyle.BARS)
            .with_target(Sql(bucketed("reservoir", "max(r.rain_1h_mm)", "max(r.rain_1h_mm_max)")))
        )
        .with_panel(_fleet_online("reservoir", "Stations reporting vs expected"))
        .with_row(dashboard.Row("Dam safety"))
        .with_panel(
            _point_panel(
                "Seepage pressure head, per piezometer (m)",
                "m",
                "seepage_pressure_m",
                metric="r.device_id || ':' || r.point",
                where="r.point <> ''",
            )
        )
        .with_panel(_point_panel("Seepage flow (L/s)", "short", "seepage_flow_lps"))
        .with_panel(_point_panel("Surface displacement (mm)", "lengthmm", "displacement_mm"))
        .with_panel(
            timeseries.Panel()
            .title("Station supply voltage (V)")
            .unit("volt")
            .height(8)
            .span(12)
            .thresholds(Thresholds("red", (11, "green")))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
            .with_target(Sql(bucketed("reservoir", "min(r.battery_v)", "min(r.battery_v_min)")))
        )
    )


# --- Power lines ------------------------------------------------------------------

_DESIGN_ICE = "NULLIF((d.meta ->> 'design_ice_mm')::float8, 0)"


def power_lines() -> dashboard.Dashboard:
    def weather(title: str, unit: str, col: str) -> timeseries.Panel:
        return (
            timeseries.Panel()
            .title(title)
            .unit(unit)
            .height(7)
            .span(8)
            .with_target(Sql(bucketed("power_line", f"avg(r.{col})", f"avg(r.{col}_avg)")))
        )

    return (
        _board(
            "gz-power-lines",
            "Power lines",
            "Overhead-line monitoring terminals: conductor temperature, icing against the design ice "
            "of each terminal's zone (registry metadata), micro-weather, terminals online.",
        )
        .with_variable(_region_sql("power_line"))
        .with_panel(
            timeseries.Panel()
            .title("Ice thickness, % of design ice")
            .description(
                "Equivalent ice thickness ÷ the design ice thickness of the zone; alarms at 50% and 80%."
            )
            .unit("percent")
            .height(9)
            .span(12)
            .thresholds(Thresholds("green", (50, "orange"), (80, "red")))
            .thresholds_style(
                cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE_AND_AREA)
            )
            .with_target(
                Sql(
                    bucketed(
                        "power_line",
                        f"100 * max(r.ice_thickness_mm) / {_DESIGN_ICE}",
                        f"100 * max(r.ice_thickness_mm_max) / {_DESIGN_ICE}",
                        where=f"r.point = '' AND {_DESIGN_ICE} IS NOT NULL",
                        group=_DESIGN_ICE,
                    )
                )
            )
        )
        .with_panel(
            timeseries.Panel()
            .title("Conductor temperature (°C)")
            .description("Alarm at 70 °C, emergency at 80 °C (steel-cored aluminium).")
            .unit("celsius")
            .height(9)
            .span(12)
            .thresholds(Thresholds("green", (70, "orange"), (80, "red")))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
            .with_target(
                Sql(bucketed("power_line", "max(r.conductor_temp_c)", "max(r.conductor_temp_c_max)"))
            )
        )
        .with_panel(
            table.Panel()
            .title("Terminals by icing, latest")
            .height(8)
            .span(12)
            .with_target(
                Sql(
                    f"""
                SELECT d.device_id AS terminal, d.meta ->> 'line' AS line, d.meta ->> 'tower' AS tower,
                       d.region, l.ice_thickness_mm, {_DESIGN_ICE} AS design_ice_mm,
                       round((100 * l.ice_thickness_mm / {_DESIGN_ICE})::numeric, 1) AS pct_of_design,
                       l.conductor_temp_c, l.ts AS at
                FROM devices d
                CROSS JOIN LATERAL (
                    SELECT r.ts, r.ice_thickness_mm, r.conductor_temp_c FROM readings_power_line r
                    WHERE r.device_id = d.device_id AND r.point = '' AND $__timeFilter(r.ts)
                    ORDER BY r.ts DESC LIMIT 1) l
                WHERE d.class = 'power_line' AND d.region IN ($region)
                ORDER BY pct_of_design DESC NULLS LAST, terminal
                LIMIT 200""",
                    "table",
                )
            )
        )
        .with_panel(_fleet_online("power_line", "Terminals online vs built"))
        .with_row(dashboard.Row("Micro-weather"))
        .with_panel(weather("Air temperature (°C)", "celsius", "air_temp_c"))
        .with_panel(weather("Relative humidity (%)", "humidity", "humidity_pct"))
        .with_panel(weather("Wind speed, 10-min average (m/s)", "velocityms", "wind_speed_ms"))
    )


# --- Chargers ---------------------------------------------------------------------

_LATEST_STATUS = """
    SELECT DISTINCT ON (s.device_id, s.point) s.device_id, s.point, s.value
    FROM state_events s
    WHERE s.class = 'charger' AND s.name = 'status' AND s.point <> '0' AND $__timeFilter(s.ts)
    ORDER BY s.device_id, s.point, s.ts DESC
"""


def chargers() -> dashboard.Dashboard:
    return (
        _board(
            "gz-chargers",
            "Chargers",
            "EV charging points: connector status mix (OCPP), power and energy delivered, faulted and "
            "offline charge points by region.",
        )
        .with_variable(_region_sql("charger"))
        .with_panel(
            piechart.Panel()
            .title("Connector status, latest")
            .height(9)
            .span(8)
            .pie_type(pm.PieChartType.DONUT)
            .reduce_options(cb.ReduceDataOptions().values(True).calcs(["lastNotNull"]))
            .with_target(
                Sql(
                    f"""
                SELECT l.value AS status, count(*) AS connectors
                FROM ({_LATEST_STATUS}) l JOIN devices d ON d.device_id = l.device_id
                WHERE d.region IN ($region)
                GROUP BY 1 ORDER BY 2 DESC""",
                    "table",
                )
            )
        )
        .with_panel(
            timeseries.Panel()
            .title("Power delivered, by region (kW)")
            .description("Σ over connectors of the average power in each interval.")
            .unit("kwatt")
            .height(9)
            .span(16)
            .stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
            .fill_opacity(30)
            .with_target(
                Sql(
                    bucketed(
                        "charger",
                        "avg(r.power_w)",
                        "avg(r.power_w_avg)",
                        metric="r.device_id || ':' || r.point",
                        where="true",
                        present="power_w",
                        outer="""SELECT b.time, d.region AS metric, sum(b.value) / 1000 AS value
                         FROM {union} JOIN devices d ON d.device_id = split_part(b.metric, ':', 1)
                         GROUP BY 1, 2 ORDER BY 1, 2""",
                    )
                )
            )
        )
        .with_panel(
            timeseries.Panel()
            .title("Energy delivered, by region (kWh per interval)")
            .description("Increase of each connector's energy register within the interval, summed.")
            .unit("kwatth")
            .height(8)
            .span(12)
            .draw_style(common.GraphDrawStyle.BARS)
            .stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
            .with_target(
                Sql(
                    bucketed(
                        "charger",
                        "max(r.energy_wh) - min(r.energy_wh)",
                        "max(r.energy_wh_max) - min(r.energy_wh_min)",
                        metric="r.device_id || ':' || r.point",
                        where="true",
                        present="energy_wh",
                        outer="""SELECT b.time, d.region AS metric, sum(b.value) / 1000 AS value
                         FROM {union} JOIN devices d ON d.device_id = split_part(b.metric, ':', 1)
                         GROUP BY 1, 2 ORDER BY 1, 2""",
                    )
                )
            )
        )
        .with_panel(
            table.Panel()
            .title("Faulted connectors and offline charge points, by region")
            .description(
                "Faulted: latest OCPP status Faulted. Offline: built but not reporting within the "
                "expected interval (from the rollup, Prometheus)."
            )
            .height(8)
            .span(12)
            .with_target(
                Sql(
                    f"""
                SELECT d.region, count(*) FILTER (WHERE l.value = 'Faulted') AS faulted_connectors,
                       count(*) AS connectors
                FROM ({_LATEST_STATUS}) l JOIN devices d ON d.device_id = l.device_id
                WHERE d.region IN ($region)
                GROUP BY 1 ORDER BY 2 DESC, 1""",
                    "table",
                    "A",
                )
            )
            .with_target(
                prom(
                    'max by (region) (fleet_devices_built{class="charger", region=~"$region"})'
                    ' - max by (region) (fleet_devices_online{class="charger", region=~"$region"})',
                    ref_id="B",
                    instant=True,
                )
            )
        )
        .with_panel(_fleet_online("charger", "Charge points online vs built"))
    )


# --- Data centres -----------------------------------------------------------------

# Energy registers per site and bucket (the last value in each bucket), then the
# increase from the previous bucket: PUE = Σ Δfacility ÷ Σ ΔIT, never a mean of ratios.
_DC_DELTAS = """
    SELECT time, metric,
           f - lag(f) OVER w AS df,
           i - lag(i) OVER w AS di
    FROM (
        SELECT $__timeGroupAlias(r.ts, $__interval), r.device_id AS metric,
               max(r.facility_energy_kwh) AS f, max(r.it_energy_kwh) AS i
        FROM readings_datacenter r JOIN devices d ON d.device_id = r.device_id AND d.region IN ($region)
        WHERE $__timeFilter(r.ts) AND r.point = '' AND $__interval_ms < 3600000
        GROUP BY 1, 2
        UNION ALL
        SELECT $__timeGroupAlias(r.bucket, $__interval), r.device_id AS metric,
               max(r.facility_energy_kwh_max) AS f, max(r.it_energy_kwh_max) AS i
        FROM readings_datacenter_hourly r
        JOIN devices d ON d.device_id = r.device_id AND d.region IN ($region)
        WHERE $__timeFilter(r.bucket) AND r.point = '' AND $__interval_ms >= 3600000
        GROUP BY 1, 2
    ) e
    WINDOW w AS (PARTITION BY metric ORDER BY time)
"""


# Racks built and in service per site and bucket (the largest value reported in it).
_DC_RACKS = """
    SELECT $__timeGroupAlias(r.ts, $__interval), r.device_id, d.region,
           max(r.racks_built) AS b, max(r.racks_in_service) AS s
    FROM readings_datacenter r JOIN devices d ON d.device_id = r.device_id AND d.region IN ($region)
    WHERE $__timeFilter(r.ts) AND r.point = '' AND $__interval_ms < 3600000
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT $__timeGroupAlias(r.bucket, $__interval), r.device_id, d.region,
           max(r.racks_built_max) AS b, max(r.racks_in_service_max) AS s
    FROM readings_datacenter_hourly r JOIN devices d ON d.device_id = r.device_id AND d.region IN ($region)
    WHERE $__timeFilter(r.bucket) AND r.point = '' AND $__interval_ms >= 3600000
    GROUP BY 1, 2, 3
"""


def datacenters() -> dashboard.Dashboard:
    pue_thresholds = Thresholds("green", (1.15, "yellow"), (1.2, "red"))
    return (
        _board(
            "gz-datacenters",
            "Data centres",
            "Hub-node data centres: energy-weighted PUE per site and for the cluster against the 1.2 "
            "(average) and 1.15 (demonstration) targets, racks built and in service, utilisation "
            "against 65%.",
        )
        .with_variable(_region_sql("datacenter"))
        .with_panel(
            timeseries.Panel()
            .title("PUE per site and for the cluster (energy-weighted)")
            .description(
                "Σ Δ facility energy ÷ Σ Δ IT energy between consecutive intervals, from the "
                "meters' registers (ISO/IEC 30134-2); lines at 1.15 and 1.2."
            )
            .unit("none")
            .decimals(3)
            .height(9)
            .span(16)
            .thresholds(pue_thresholds)
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
            .with_target(
                Sql(f"""
                SELECT time, metric, df / NULLIF(di, 0) AS pue
                FROM ({_DC_DELTAS}) x WHERE di > 0
                UNION ALL
                SELECT time, 'cluster' AS metric, sum(df) / NULLIF(sum(di), 0) AS pue
                FROM ({_DC_DELTAS}) y WHERE di > 0
                GROUP BY time
                ORDER BY 1, 2""")
            )
        )
        .with_panel(
            stat.Panel()
            .title("Cluster PUE (plan indicator)")
            .description("The rollup's energy-weighted PUE for Gui'an and the province.")
            .decimals(3)
            .height(9)
            .span(8)
            .thresholds(pue_thresholds)
            .with_target(
                prom('max by (region) (plan_indicator_value{indicator="dc_average_pue"})', "{{region}}")
            )
        )
        .with_panel(
            timeseries.Panel()
            .title("Standard racks built and in service")
            .unit("short")
            .height(8)
            .span(12)
            .with_target(
                Sql(f"""
                SELECT time, 'built' AS metric, sum(b) AS racks FROM ({_DC_RACKS}) x GROUP BY 1
                UNION ALL
                SELECT time, 'in service' AS metric, sum(s) FROM ({_DC_RACKS}) y GROUP BY 1
                ORDER BY 1, 2""")
            )
        )
        .with_panel(
            timeseries.Panel()
            .title("Rack utilisation (in service ÷ built)")
            .unit("percentunit")
            .min(0)
            .max(1)
            .height(8)
            .span(12)
            .thresholds(Thresholds("red", (0.65, "green")))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
            .with_target(
                Sql(f"""
                SELECT time, region AS metric, sum(s) / NULLIF(sum(b), 0) AS utilisation
                FROM ({_DC_RACKS}) x GROUP BY 1, 2 ORDER BY 1, 2""")
            )
        )
        .with_panel(
            stat.Panel()
            .title("Racks and utilisation (plan indicators)")
            .height(6)
            .span(24)
            .with_target(
                prom(
                    "max by (indicator, region) "
                    '(plan_indicator_value{indicator=~"dc_standard_racks|dc_rack_utilization"})',
                    "{{indicator}} {{region}}",
                )
            )
        )
    )


# --- Ingestion --------------------------------------------------------------------


def ingestion() -> dashboard.Dashboard:
    def panel(title: str, unit: str, *targets: tuple[str, str], w: int = 12) -> timeseries.Panel:
        p = timeseries.Panel().title(title).unit(unit).height(8).span(w)
        for i, (expr, legend) in enumerate(targets):
            p = p.with_target(prom(expr, legend, "ABCDEFGH"[i]))
        return p

    return (
        _board(
            "gz-ingestion",
            "Ingestion",
            "The ingest workers: messages by class and outcome, dead letters by reason, commit latency, "
            "queue depth, lag, broker and database connections, rollup.",
        )
        .with_panel(
            panel(
                "Messages by class and outcome (/s)",
                "reqps",
                (
                    "sum by (class, outcome) (rate(ingest_messages_total[$__rate_interval]))",
                    "{{class}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            panel(
                "Dead letters by reason (/s)",
                "reqps",
                ("sum by (reason) (rate(ingest_dead_letters_total[$__rate_interval]))", "{{reason}}"),
            )
        )
        .with_panel(
            panel(
                "Commit latency (s)",
                "s",
                (
                    "histogram_quantile(0.5, sum by (le) (rate(ingest_commit_seconds_bucket"
                    "[$__rate_interval])))",
                    "p50",
                ),
                (
                    "histogram_quantile(0.99, sum by (le) (rate(ingest_commit_seconds_bucket"
                    "[$__rate_interval])))",
                    "p99",
                ),
                w=8,
            )
        )
        .with_panel(
            panel(
                "Receive-to-commit lag (s)",
                "s",
                (
                    "histogram_quantile(0.99, sum by (le) (rate(ingest_receive_to_commit_seconds_bucket"
                    "[$__rate_interval])))",
                    "p99",
                ),
                ("time() - max(ingest_last_commit_timestamp_seconds)", "since last commit"),
                w=8,
            )
        )
        .with_panel(
            panel(
                "Queue depth",
                "short",
                ("sum by (instance) (ingest_queue_batches)", "batches {{instance}}"),
                ("sum by (instance) (ingest_pending_messages)", "pending msgs {{instance}}"),
                ("sum by (instance) (ingest_intake_paused)", "paused {{instance}}"),
                w=8,
            )
        )
        .with_panel(
            panel(
                "Rows written by table (/s)",
                "rowsps",
                ("sum by (table) (rate(ingest_rows_written_total[$__rate_interval]))", "{{table}}"),
            )
        )
        .with_panel(
            panel(
                "Broker and database connections",
                "short",
                ("ingest_mqtt_connected", "mqtt {{instance}}"),
                ("ingest_db_connected", "db {{instance}}"),
                (
                    "sum by (instance) (increase(ingest_mqtt_connects_total[$__rate_interval]))",
                    "mqtt connects {{instance}}",
                ),
            )
        )
        .with_panel(
            panel(
                "Database errors (/s) and deduplicated batches (/s)",
                "short",
                (
                    "sum by (kind) (rate(ingest_db_errors_total[$__rate_interval])) or on() vector(0)",
                    "errors {{kind}}",
                ),
                ("sum(rate(ingest_dedup_batches_total[$__rate_interval]))", "dedup batches"),
            )
        )
        .with_panel(
            panel(
                "Rollup",
                "s",
                ("time() - max(plan_rollup_last_success_timestamp_seconds)", "since last rollup"),
                ("max(plan_rollup_duration_seconds)", "duration"),
            )
        )
    )


BOARDS: dict[str, Callable[[], cogbuilder.Builder[dm.Dashboard]]] = {
    "plan-progress": plan_progress,
    "reservoirs": reservoirs,
    "power-lines": power_lines,
    "chargers": chargers,
    "datacenters": datacenters,
    "ingestion": ingestion,
}
