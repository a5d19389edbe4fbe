"""Read the generated dashboards back: every PromQL and SQL target, and Grafana's
macros and variables substituted as Grafana would before sending them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"


@dataclass(frozen=True)
class Target:
    board: str
    panel: str
    kind: str  # "prometheus" or "sql"
    text: str
    fmt: str = ""


def _panels(doc: dict[str, object]) -> Iterator[dict[str, object]]:
    for p in doc.get("panels", []):  # type: ignore[union-attr]
        yield p
        yield from p.get("panels", [])


def targets() -> list[Target]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        for p in _panels(doc):
            for t in p.get("targets", []):
                kind = t["datasource"]["type"]
                if kind == "prometheus":
                    out.append(Target(path.stem, p["title"], "prometheus", t["expr"]))
                else:
                    out.append(Target(path.stem, p["title"], "sql", t["rawSql"], t["format"]))
    return out


def variables() -> list[tuple[str, str, str]]:
    """(board, datasource type, query) of every query variable."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        for v in doc.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                out.append((path.stem, v["datasource"]["type"], v["query"]))
    return out


def _seconds(interval: str) -> int:
    n, unit = int(interval[:-1]), interval[-1]
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def sql(text: str, start: datetime, end: datetime, interval: str, regions: list[str]) -> str:
    """Grafana's PostgreSQL macros, in their plain-PostgreSQL form (the TimescaleDB
    option swaps floor(epoch) for time_bucket), and the region variable as a
    multi-value list."""
    text = text.replace("$__interval_ms", str(_seconds(interval) * 1000)).replace("$__interval", interval)
    text = text.replace("$region", ",".join(f"'{r}'" for r in regions))

    def group(m: re.Match[str]) -> str:
        col, iv = m.group(2).strip(), m.group(3).strip().strip("'")
        s = _seconds(iv)
        expr = f"floor(extract(epoch from {col})/{s})*{s}"
        return expr + (' AS "time"' if m.group(1) else "")

    text = re.sub(r"\$__timeGroup(Alias)?\(([^,]+),([^)]+)\)", group, text)
    text = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
        text,
    )
    assert "$" not in text, f"unsubstituted Grafana variable in {text}"
    return text


def promql(text: str, rate_interval: str, region: str, indicator: str) -> str:
    text = text.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    text = text.replace('=~"$region"', '=~".*"').replace("$region", region).replace("$indicator", indicator)
    assert "$" not in text, f"unsubstituted Grafana variable in {text}"
    return text
