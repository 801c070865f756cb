"""The alerting rules (services/deploy/vidpipe_deploy/monitoring/alerts.yaml): valid for Prometheus, their
promtool unit tests pass (each alert fires on a fault's series and stays quiet on healthy ones), every
alert says how bad it is and where its runbook is, every runbook is a section of docs/OPERATIONS.md, and
every metric an expression reads is one the services expose."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "services" / "deploy" / "vidpipe_deploy" / "monitoring"
RULES = MONITORING / "alerts.yaml"
RULE_TESTS = MONITORING / "alerts_test.yaml"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not installed: run `make prometheus-deps` (make test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=MONITORING, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"


def test_promtool_checks_the_rules(promtool):
    _run([promtool, "check", "rules", RULES.name])


def test_promtool_unit_tests_pass(promtool):
    _run([promtool, "test", "rules", RULE_TESTS.name])


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_says_how_long_how_bad_what_and_where_its_runbook_is():
    assert len(alerts()) >= 7
    for rule in alerts():
        name = rule["alert"]
        assert rule.get("for"), f"{name}: a `for`, so a blip does not page"
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key), f"{name}: no {key} annotation"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_is_a_section_of_the_operations_guide():
    anchors = {
        github_anchor(line.lstrip("#")) for line in OPERATIONS.read_text().splitlines() if re.match(r"#{1,6} ", line)
    }
    for rule in alerts():
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/OPERATIONS.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in {OPERATIONS.name}"


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet():
    fires, quiet = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names <= fires, f"never seen firing: {sorted(names - fires)}"
    assert names <= quiet, f"never seen quiet: {sorted(names - quiet)}"


def exposed_metrics() -> set[str]:
    """The sample names the services' /metrics can show, from their own registries (the publisher's names
    are built at scrape time, so reading the collectors beats reading the source)."""
    from analytics_service.metrics import AnalyticsMetrics
    from consumer_service.metrics import ConsumerMetrics
    from frame_publisher.metrics import PublisherCollector
    from inference_service.metrics import ServiceMetrics

    publisher, consumer = CollectorRegistry(), CollectorRegistry()
    publisher.register(PublisherCollector(lambda: None, lambda: 0))
    ConsumerMetrics(consumer)
    registries = [publisher, consumer, AnalyticsMetrics().registry, ServiceMetrics().registry]
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for registry in registries:
        for family in registry.collect():
            names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
            names |= {sample.name for sample in family.samples}
    return names


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers, ranges,
    grouping clauses, functions and keywords are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {name for name in names if name.lower() not in _KEYWORDS}


def test_metric_names_are_read_out_of_expressions():
    expr = 'sum by (ns, le) (rate(a_bucket{x="y{"}[5m])) / ignoring(z) b > bool 0.5 and on(w) c offset 5m'
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def test_every_metric_an_alert_reads_is_one_the_services_expose():
    exposed = exposed_metrics()
    for rule in alerts():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exposed, f"{rule['alert']} reads metrics no service exposes: {sorted(used - exposed)}"
