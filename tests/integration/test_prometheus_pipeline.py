"""A real Prometheus scraping every service of a running pipeline (publisher, consumer, inference,
analytics) and evaluating the committed alert rules: every query of the Grafana dashboard returns data,
every rule evaluates, no alert is active while the pipeline is healthy, and an inference outage makes
the consumer-lag alert active.

The rules wait minutes (`for:` and range windows of 5 to 15 minutes) before they fire; the test loads a
copy of alerts.yaml in which every `for:` is FOR and every range window is WINDOW (shorten_rules), and
scrapes and evaluates every SCRAPE_S. The expressions are otherwise the committed ones."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.pipeline import missing_setup, topic_env
from tests.helpers import produce_frames, produce_raw, video_jpegs
from tools.harness.processes import (
    ServiceProcess,
    analytics_process,
    consumer_health_url,
    consumer_process,
    free_port,
    inference_process,
    ops_url,
    publisher_process,
)
from tools.prometheus import ALERT_RULES, LocalPrometheus, prometheus_binary
from vidpipe.kafka import ensure_topics

pytestmark = [pytest.mark.broker, pytest.mark.model]

DASHBOARD = ALERT_RULES.parent / "dashboard.json"
SCRAPE_S = 1.0
WINDOW = "15s"  # several scrapes: enough for rate() and deriv()
FOR = "3s"
LAG_ALERT = "VidpipeConsumerLagGrowing"
HOLD_S = 30.0  # past WINDOW plus the consumer's pause_after_s (5 s) and its lag interval (5 s)
# The dashboard's variables as "All" substitutes them; $__rate_interval as Grafana would at this scrape interval.
VARIABLES = {"namespace": ".*", "stream": ".*", "__rate_interval": WINDOW}


def shorten_rules(source: Path, target: Path) -> list[str]:
    """alerts.yaml with every `for:` set to FOR and every range window ([5m], [10m], [15m]) to WINDOW;
    returns the alerts' names."""
    document = yaml.safe_load(source.read_text())
    names = []
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["for"] = FOR
            rule["expr"] = re.sub(r"\[\d+[smhd]\]", f"[{WINDOW}]", rule["expr"])
            names.append(rule["alert"])
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return names


def substitute(expr: str) -> str:
    """A dashboard expression with its variables' values (${name} or $name)."""
    result = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: VARIABLES[m.group(1) or m.group(2)], expr)
    assert "$" not in result, result
    return result


def dashboard_queries() -> dict[str, str]:
    """Each panel target's expression (keyed by panel title and refId), and the selector of each query
    variable's label_values(), all with the variables substituted."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries[f"{panel['title']} [{target['refId']}]"] = substitute(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert selector, variable["definition"]
            queries[f"variable {variable['name']}"] = substitute(selector.group(1))
    return queries


def wait_for(
    what: Callable[[], str], check: Callable[[], Any], timeout_s: float, services: list[ServiceProcess]
) -> Any:
    """check()'s first truthy answer (polled every scrape), or fail saying what() after the last try."""
    deadline = time.monotonic() + timeout_s
    while True:
        for service in services:
            assert service.running, f"{service.name} died:\n{service.log_tail()}"
        answer = check()
        if answer or time.monotonic() > deadline:
            break
        time.sleep(SCRAPE_S)
    assert answer, f"{what()} after {timeout_s:.0f}s"
    return answer


def active(prometheus: LocalPrometheus) -> list[tuple[str, str, dict[str, str]]]:
    return [(a["labels"]["alertname"], a["state"], a["labels"]) for a in prometheus.alerts()]


def test_prometheus_sees_the_pipeline_the_dashboard_has_data_and_an_outage_fires_the_lag_alert(
    kafka_bootstrap, kafka_settings, topics, default_model, sample_video, tmp_path
):
    if prometheus_binary() is None:
        missing_setup("prometheus not installed: run `make prometheus-deps` (make test does it)")
    rules = tmp_path / "alerts.yaml"
    alert_names = shorten_rules(ALERT_RULES, rules)
    events_topic = f"{topics.frames.removesuffix('.frames')}.events"
    ensure_topics(kafka_settings, topics.model_copy(update={"events": events_topic}).specs())
    env = {**topic_env(topics), "TOPICS_EVENTS": events_topic}
    run = uuid.uuid4().hex[:6]

    inference_port = free_port()
    inference = inference_process(inference_port, tmp_path, default_model)
    consumer = consumer_process(
        kafka_bootstrap,
        f"http://127.0.0.1:{inference_port}",
        str(tmp_path / "archive"),
        tmp_path,
        CONSUMER_GROUP_ID=f"prometheus-{run}",
        **env,
    )
    analytics = analytics_process(
        kafka_bootstrap, tmp_path, None, None, free_port(), ANALYTICS_GROUP_ID=f"prometheus-{run}", **env
    )
    publisher_port = free_port()
    # A few frames a second, endlessly: a camera that stays live for the whole test.
    publisher = publisher_process(
        kafka_bootstrap,
        sample_video,
        tmp_path,
        ["--stream-id", "cam-1", "--loop", "--target-fps", "5", "--health-port", str(publisher_port)],
        **env,
    )
    prometheus = LocalPrometheus(
        tmp_path / "prometheus",
        {
            "frame-publisher": [f"127.0.0.1:{publisher_port}"],
            "consumer-service": [f"127.0.0.1:{consumer.env['CONSUMER_HEALTH_PORT']}"],
            "inference-service": [ops_url(inference, "").removeprefix("http://")],
            "analytics-service": [ops_url(analytics, "").removeprefix("http://")],
        },
        rule_files=[rules],
        interval_s=SCRAPE_S,
    )
    services = [inference, consumer, analytics, publisher]
    try:
        prometheus.start()
        inference.start()
        analytics.start()
        inference.wait_ready(timeout_s=120)
        consumer.start().wait_http(consumer_health_url(consumer), timeout_s=60)
        analytics.wait_ready(timeout_s=60)
        publisher.start()
        # A record with no value: one dead letter, so the dead-letter panel has a series to show.
        produce_raw(kafka_settings, topics.frames, b"cam-1", None, [])

        def all_targets_up() -> bool:
            health = prometheus.targets_health()
            return len(health) == 4 and set(health.values()) == {"up"}

        wait_for(lambda: f"targets not all up: {prometheus.targets_health()}", all_targets_up, 30, services)

        queries = dashboard_queries()
        missing: list[str] = []

        def every_query_has_data() -> bool:
            missing[:] = [name for name, expr in queries.items() if not prometheus.query(expr)]
            return not missing

        wait_for(lambda: f"dashboard queries without data: {missing}", every_query_has_data, 60, services)

        def every_rule_evaluated() -> list[dict[str, Any]]:
            evaluated = prometheus.rules()
            return evaluated if all(r["health"] != "unknown" for r in evaluated) else []

        evaluated = wait_for(lambda: "rules not evaluated yet", every_rule_evaluated, 10, services)
        assert sorted(r["name"] for r in evaluated) == sorted(alert_names)
        assert [(r["name"], r["health"], r.get("lastError")) for r in evaluated if r["health"] != "ok"] == []
        assert all(not r.get("lastError") for r in evaluated)

        # Healthy: no alert active over a few evaluations.
        for _ in range(3):
            assert active(prometheus) == [], "alerts active while the pipeline is healthy"
            time.sleep(SCRAPE_S)

        # The outage: inference gone, the camera keeps publishing and a backlog arrives at once; the
        # consumer fills its pipeline, pauses its partitions, and its lag must keep growing.
        inference.stop()
        services.remove(inference)
        produce_frames(kafka_settings, topics.frames, "cam-2", video_jpegs(sample_video, 10) * 20)

        def lag_alert_firing() -> bool:
            return (LAG_ALERT, "firing") in {(name, state) for name, state, _ in active(prometheus)}

        wait_for(lambda: f"{LAG_ALERT} not firing (active: {active(prometheus)})", lag_alert_firing, 60, services)
        # ... and it stays so while the outage lasts: long past the backlog's step (WINDOW) and the
        # consumer's pause of its partitions, the lag still grows with what the camera publishes.
        until = time.monotonic() + HOLD_S
        while time.monotonic() < until:
            assert lag_alert_firing(), f"{LAG_ALERT} resolved during the outage: {prometheus.query('consumer_lag')}"
            time.sleep(SCRAPE_S)
    finally:
        prometheus.stop()
        for service in (publisher, consumer, analytics, inference):
            service.stop()
