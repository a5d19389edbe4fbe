"""Prometheus configuration and alert rules, checked and unit-tested by promtool."""

from __future__ import annotations

import subprocess

from tests.ops.prom import PROMTOOL, ROOT, RULES

DEPLOY = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> str:
    r = subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_config_and_rules_are_valid() -> None:
    out = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in out
    assert len(RULES) == 2
    promtool("check", "rules", *map(str, RULES))


def test_rule_unit_tests_pass() -> None:
    tests = sorted((DEPLOY / "tests").glob("*_test.yml"))
    assert len(tests) == 2
    out = promtool("test", "rules", *(str(t.relative_to(DEPLOY)) for t in tests))
    assert out.count("SUCCESS") == len(tests)


def test_every_alert_is_unit_tested() -> None:
    import yaml

    alerts = {
        r["alert"]
        for path in RULES
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    tested = {
        a["alertname"]
        for path in (DEPLOY / "tests").glob("*_test.yml")
        for t in yaml.safe_load(path.read_text())["tests"]
        for a in t.get("alert_rule_test", [])
        if a.get("exp_alerts")
    }
    assert alerts == tested, f"alerts never seen firing in a unit test: {sorted(alerts - tested)}"
