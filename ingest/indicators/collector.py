"""Prometheus collector of the plan's figures, read from the latest rollup in memory.

Labels are bounded: indicator (the catalogue), region (eleven keys and `unknown`),
year (the catalogue's target years), class (four), alarm (alarms.ALARMS). Nothing
per device.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest import report
from ingest.indicators.runner import Rollup


class IndicatorCollector(Collector):
    def __init__(self, rollup: Rollup) -> None:
        self.rollup = rollup

    def _families(self) -> dict[str, GaugeMetricFamily]:
        g = GaugeMetricFamily
        return {
            "value": g("plan_indicator_value", "Latest rollup value of a plan indicator, by region",
                       labels=["indicator", "region"]),
            "target": g("plan_indicator_target", "Plan target of an indicator for a year, by region",
                        labels=["indicator", "region", "year"]),
            "progress": g("plan_indicator_progress_ratio",
                          "Value / target (at least) or target / value (below); 1 or more is met",
                          labels=["indicator", "region", "year"]),
            "interim": g("plan_indicator_interim",
                         "1 when the figure is interim (short window or low register coverage)",
                         labels=["indicator", "region"]),
            "built": g("fleet_devices_built", "Devices that reported at least once, by class and region",
                       labels=["class", "region"]),
            "online": g("fleet_devices_online",
                        "Devices that reported within their class's expected interval, by class and region",
                        labels=["class", "region"]),
            "alarm": g("fleet_alarm_devices",
                       "Devices whose latest reading is in alarm, by alarm, class and region",
                       labels=["alarm", "class", "region"]),
            "last": g("plan_rollup_last_success_timestamp_seconds",
                      "Unix time of the last successful indicator rollup"),
            "duration": g("plan_rollup_duration_seconds", "Duration of the last successful rollup"),
        }  # fmt: skip

    def describe(self) -> Iterator[Metric]:
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        fam = self._families()
        latest = self.rollup.latest
        if latest is not None:
            # the same report as the API's and the status page's (ingest.report)
            for region in report.region_keys():
                for it in report.report(self.rollup.catalogue, latest, region).items:
                    key = it["key"]
                    if it["value"] is not None:
                        fam["value"].add_metric([key, region], it["value"])
                    fam["interim"].add_metric([key, region], 1.0 if it["interim"] else 0.0)
                    for year, target in it["targets"].items():
                        if target is None:
                            continue
                        fam["target"].add_metric([key, region, year], target)
                        p = it["progress"][year]
                        if p is not None:
                            fam["progress"].add_metric([key, region, year], p)
            for (cls, region), (built, online) in latest.fleet.items():
                fam["built"].add_metric([cls, region], built)
                fam["online"].add_metric([cls, region], online)
            for (alarm, cls, region), n in latest.alarms.items():
                fam["alarm"].add_metric([alarm, cls, region], n)
            fam["duration"].add_metric([], latest.duration_s)
        if self.rollup.last_success is not None:
            fam["last"].add_metric([], self.rollup.last_success)
        yield from fam.values()
