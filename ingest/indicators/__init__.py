"""The plan's indicators: catalogue (data), regions, the pure rollup math, and the
runner that feeds the snapshots, the progress API and Prometheus."""

from ingest.indicators.catalogue import Catalogue, CatalogueError, Indicator, Target, load_catalogue
from ingest.indicators.collector import IndicatorCollector
from ingest.indicators.compute import DeviceFacts, Figure, Params, RollupResult, rollup
from ingest.indicators.energy import Energy, Segment, register_energy
from ingest.indicators.progress import progress, status
from ingest.indicators.regions import PROVINCE, UNKNOWN, Region, normalise, regions
from ingest.indicators.runner import Rollup

__all__ = [
    "PROVINCE",
    "UNKNOWN",
    "Catalogue",
    "CatalogueError",
    "DeviceFacts",
    "Energy",
    "Figure",
    "Indicator",
    "IndicatorCollector",
    "Params",
    "Region",
    "Rollup",
    "RollupResult",
    "Segment",
    "Target",
    "load_catalogue",
    "normalise",
    "progress",
    "regions",
    "register_energy",
    "rollup",
    "status",
]
