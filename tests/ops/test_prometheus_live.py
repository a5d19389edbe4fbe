"""The service fed by a small simulated fleet, scraped by a real Prometheus that
evaluates the project's rules; every PromQL expression of every dashboard and rule
must parse, and return data."""

from __future__ import annotations

import asyncio
import re
import time

import yaml

from tests.ops import grafana_queries as gq
from tests.ops.live import fed_service
from tests.ops.prom import RULES, Prometheus, prometheus
from tests.services import Broker

NAME = re.compile(r"\b((?:ingest|plan|fleet)_[a-z0-9_]+|up)\b(\{[^}]*\})?")


def rule_exprs() -> list[tuple[str, str]]:
    return [
        (r.get("alert") or r["record"], r["expr"])
        for path in RULES
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
    ]


def wait_for(prom: Prometheus, expr: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not prom.query(expr).get("data", {}).get("result"):
        assert time.monotonic() < deadline, f"no data for {expr}: {prom.log()}"
        time.sleep(0.2)


def check(prom: Prometheus, where: str, expr: str, exported: set[str], whole: bool) -> list[str]:
    """Problems with one expression: it must parse; then either the whole expression
    (dashboards) or each of its selectors (rules: an alert's condition is empty while
    it is not firing) must return data."""
    r = prom.query(expr)
    if r["status"] != "success":
        return [f"{where}: {r.get('errorType')}: {r.get('error')} in {expr}"]
    if whole:
        return [] if r["data"]["result"] else [f"{where}: no data for {expr}"]
    return [
        f"{where}: no data for selector {m.group(0)}"
        for m in NAME.finditer(expr)
        if not prom.query(m.group(0))["data"]["result"]
    ]


async def test_every_dashboard_and_rule_expression(mqtt_broker: Broker, db_url: str) -> None:
    async with fed_service(mqtt_broker, db_url) as svc:
        with prometheus([f"127.0.0.1:{svc.http_port}"]) as prom:
            await asyncio.to_thread(wait_for, prom, "rate(ingest_messages_total[5s])")
            await asyncio.to_thread(wait_for, prom, "increase(ingest_mqtt_connects_total[5s])")
            exported = {n for n in prom.api("label/__name__/values")["data"] if NAME.fullmatch(n)} | {"up"}
            for name in list(exported):
                for suffix in ("_bucket", "_count", "_sum", "_created"):
                    exported.add(name.removesuffix(suffix))
            problems: list[str] = []
            prom_targets = [t for t in gq.targets() if t.kind == "prometheus"]
            assert len(prom_targets) >= 25
            for t in prom_targets:
                expr = gq.promql(t.text, "5s", "520000", "smart_chargers")
                problems += await asyncio.to_thread(
                    check, prom, f"{t.board} / {t.panel}", expr, exported, True
                )
            exprs = rule_exprs()
            assert len(exprs) >= 16
            for name, expr in exprs:
                problems += await asyncio.to_thread(check, prom, f"rule {name}", expr, exported, False)
            # Every rule loaded and evaluates without error against the live series.
            await asyncio.sleep(1.5)
            groups = prom.api("rules")["data"]["groups"]
            loaded = [r for g in groups for r in g["rules"]]
            assert len(loaded) == len(exprs)
            problems += [f"rule {r['name']}: {r.get('lastError')}" for r in loaded if r["health"] == "err"]
            # The healthy, fed service raises no service alert.
            firing = prom.api("alerts")["data"]["alerts"]
            problems += [
                f"unexpected alert {a['labels']['alertname']}"
                for a in firing
                if a["state"] == "firing" and a["labels"]["alertname"].startswith("Ingest")
            ]
    assert not problems, "\n".join(problems)
