"""What the tests of the registry's control API against the real broker share: a service with its own
registry topics (never the default ones, which other tests or a demo on the same broker may fill) and
its token, and JSON calls of any method."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.analytics_support import analytics_env, analytics_topics
from tools.harness.processes import ServiceProcess, analytics_process, analytics_url, free_port
from vidpipe.kafka import KafkaSettings
from vidpipe.topics import TopicSettings

TOKEN = "registry-service-token-for-the-tests"


def registry_service(
    kafka_bootstrap: str, kafka: KafkaSettings, logs: Path, name: str = "analytics", **extra: str
) -> tuple[ServiceProcess, TopicSettings]:
    """An analytics service (not started) on fresh topics, a fresh registry and status topic included."""
    topics = analytics_topics(kafka)  # the registry and status topics are the run's own too
    env = {**analytics_env(topics), "ANALYTICS_API_TOKEN": TOKEN, **extra}
    service = analytics_process(kafka_bootstrap, logs, None, None, free_port(), name=name, **env)
    return service, topics


def call(
    service: ServiceProcess, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON answer or None) of one API call, error statuses included."""
    request = urllib.request.Request(analytics_url(service, path), method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, data = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, headers, data = exc.code, dict(exc.headers), exc.read()
    return status, headers, json.loads(data) if data else None
