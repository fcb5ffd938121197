"""The monitoring configuration an on-call engineer relies on: Prometheus
accepts it, every alert fires in its own unit test, every alert says how bad
it is and where its runbook is, and every metric the alerts and the dashboard
query is one the worker exports (names come from the code, so this cannot go
stale)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import faust
import pytest
import yaml
from faust.sensors.prometheus import setup_prometheus_sensors
from prometheus_client import REGISTRY, CollectorRegistry

import nudge.streams.worker  # noqa: F401  (registers every metric the worker process defines)
from nudge.streams.metrics import TableEntries

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "ops/prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
DASHBOARD = ROOT / "ops/grafana/dashboards/nudge.json"
DATASOURCE = ROOT / "ops/grafana/provisioning/datasources/prometheus.yml"
OPERATIONS = ROOT / "docs/operations.md"

#: Series Prometheus makes itself, not the worker.
SCRAPE_SERIES = {"up"}
#: What each metric type exposes as series (prometheus_client's text format).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "offset", "bool"}
PROMQL_WORDS |= {"group_left", "group_right", "inf", "nan"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: `make install` installs it (Debian package prometheus)")
    return path


def run_promtool(promtool: str, *args: str) -> str:
    done = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression: what is left after removing
    strings, label matchers, ranges, grouping clauses and function calls."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b[a-z_]+\s*\(", "(", expr)
    names = set(re.findall(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return names - PROMQL_WORDS


def exported_series() -> set[str]:
    """Every series name the worker can export: nudge's metrics (imported with
    streams.worker, models included), the table collector and Faust's sensor
    under the default app id (its prefix)."""
    faust_registry = CollectorRegistry()
    setup_prometheus_sensors(faust.App("nudge"), registry=faust_registry)
    faust_registry.register(TableEntries({}))
    names = set()
    for registry in (REGISTRY, faust_registry):
        for family in registry.collect():
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{x="b_total"}[5m])))'
        " > 0.001 and on (job) max(up == 0) or vector(0) - c offset 1h"
    )
    assert metric_names(expr) == {"a_bucket", "up", "c"}


def test_alert_rules_are_valid(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", str(ALERTS))


def test_prometheus_config_is_valid(promtool: str) -> None:
    run_promtool(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_every_alert_fires_in_its_unit_test(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    untested = {rule["alert"] for rule in alert_rules()} - fired
    assert not untested, f"alerts with no test that makes them fire: {sorted(untested)}"


def test_every_alert_says_how_bad_it_is_and_what_to_do() -> None:
    runbook = OPERATIONS.read_text()
    for rule in alert_rules():
        name = rule["alert"]
        assert rule.get("for"), f"{name} has no `for`: one bad scrape would page someone"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook"] == f"docs/operations.md#{name.lower()}", name
        assert f"\n### {name}\n" in runbook, f"docs/operations.md has no section for {name}"


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool has no query linter, but it parses recording rules."""
    records = [
        {"record": f"dashboard:query_{i}", "expr": re.sub(r"\$__\w+", "5m", expr)}
        for i, expr in enumerate(dashboard_queries())
    ]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    run_promtool(promtool, "check", "rules", str(rules))


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]


def test_alerts_and_dashboard_query_only_exported_metrics() -> None:
    exported = exported_series() | SCRAPE_SERIES
    queried = {
        name: source
        for source, exprs in (
            ("alerts.yml", [rule["expr"] for rule in alert_rules()]),
            ("nudge.json", dashboard_queries()),
        )
        for expr in exprs
        for name in metric_names(expr)
    }
    unknown = {name: source for name, source in queried.items() if name not in exported}
    assert not unknown, f"metrics no worker exports: {unknown}"
    for required in ("nudge_consumer_lag", "nudge_model_info", "nudge_model_serving"):
        assert required in queried, f"{required} is neither alerted on nor on the dashboard"
