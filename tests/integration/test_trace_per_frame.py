"""One trace per frame across the four services, as processes against the real broker: publisher -> Kafka ->
consumer -> inference (HTTP) -> results -> analytics -> events, each writing its spans to a file
(VIDPIPE_TRACES_FILE), every frame sampled (PUBLISHER_TRACE_SAMPLE_RATIO=1)."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.analytics_support import analytics_env, analytics_topics, wait_for
from tests.helpers import read_all
from tools.harness.processes import (
    analytics_process,
    consumer_health_url,
    consumer_process,
    free_port,
    inference_process,
    publisher_process,
)
from vidpipe.contract import Header, decode_result

pytestmark = [pytest.mark.broker, pytest.mark.model]

FRAMES = 3
SERVICES = ("frame-publisher", "consumer-service", "inference-service", "analytics-service")
BATCH = "POST /v1/infer/batch"


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def duration_ms(span: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(span[k].replace("Z", "+00:00")) for k in ("start_time", "end_time"))
    return (end - start).total_seconds() * 1000


def one(spans: list[dict[str, Any]], service: str, name: str) -> dict[str, Any]:
    found = [s for s in spans if s["resource"]["attributes"]["service.name"] == service and s["name"] == name]
    assert len(found) == 1, f"{service} {name!r}: {len(found)} spans in {[(s['name']) for s in spans]}"
    return found[0]


def ancestors(span: dict[str, Any], trace: list[dict[str, Any]]) -> list[str]:
    by_id = {s["context"]["span_id"]: s for s in trace}
    found = []
    while (parent := span["parent_id"]) in by_id:
        found.append(parent)
        span = by_id[parent]
    return found


def traceparent_ids(value: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = value.split("-")
    return f"0x{trace_id}", f"0x{span_id}"


def test_each_frame_has_one_trace_through_all_four_services(
    kafka_bootstrap, kafka_settings, default_model, sample_video, tmp_path
):
    topics = analytics_topics(kafka_settings)
    env = {k: v for k, v in analytics_env(topics).items() if k != "ANALYTICS_GROUP_ID"}
    files = {service: tmp_path / f"{service}.jsonl" for service in SERVICES}

    def traced(service: str) -> dict[str, str]:
        return {"VIDPIPE_TRACES_FILE": str(files[service]), "OTEL_EXPORTER_OTLP_ENDPOINT": "", **env}

    port = free_port()
    inference = inference_process(port, tmp_path, default_model, **traced("inference-service")).start()
    started = [inference]
    try:
        consumer = consumer_process(
            kafka_bootstrap,
            f"http://127.0.0.1:{port}",
            str(tmp_path / "archive"),
            tmp_path,
            CONSUMER_GROUP_ID=f"trace-{uuid.uuid4().hex[:6]}",
            # One frame per batch: the batch's inference spans are then in that frame's own trace.
            CONSUMER_BATCH_MAX_FRAMES="1",
            **traced("consumer-service"),
        ).start()
        started.append(consumer)
        analytics = analytics_process(
            kafka_bootstrap,
            tmp_path,
            None,
            None,
            free_port(),
            ANALYTICS_GROUP_ID=f"trace-{uuid.uuid4().hex[:6]}",
            **traced("analytics-service"),
        ).start()
        started.append(analytics)
        inference.wait_ready(timeout_s=60)
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        analytics.wait_ready(timeout_s=60)
        publisher = publisher_process(
            kafka_bootstrap,
            sample_video,
            tmp_path,
            ["--stream-id", "traced", "--pace", "fast", "--max-frames", str(FRAMES)],
            PUBLISHER_TRACE_SAMPLE_RATIO="1",
            **traced("frame-publisher"),
        )
        assert publisher.start().process.wait(60) == 0, publisher.log_tail()

        results = read_all(kafka_settings, topics.results, expect=FRAMES, timeout_s=60)
        events = read_all(kafka_settings, topics.events, expect=1, timeout_s=30)
        wait_for(
            lambda: len(read_spans(files["analytics-service"])) >= FRAMES,
            "the analytics service's spans",
            analytics,
        )
    finally:
        for process in reversed(started):
            process.stop()

    spans = [span for service in SERVICES for span in read_spans(files[service])]
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["context"]["trace_id"]].append(span)
    assert len(results) == FRAMES and events

    docs = [decode_result(record.value()) for record in results]
    assert sorted(d.seq for d in docs) == list(range(FRAMES))
    for doc, record in zip(docs, results, strict=True):
        trace_id, publish_id = traceparent_ids(doc.traceparent)
        trace = by_trace[trace_id]
        assert {s["resource"]["attributes"]["service.name"] for s in trace} == set(SERVICES), trace

        publish = one(trace, "frame-publisher", f"{topics.frames} publish")
        assert (publish["context"]["span_id"], publish["parent_id"], publish["kind"]) == (
            publish_id,
            None,
            "SpanKind.PRODUCER",
        )
        assert publish["attributes"]["messaging.system"] == "kafka"
        assert publish["attributes"]["messaging.kafka.message.key"] == "traced"

        process = one(trace, "consumer-service", f"{topics.frames} process")
        assert (process["parent_id"], process["kind"]) == (publish_id, "SpanKind.CONSUMER")
        assert process["attributes"]["messaging.destination.name"] == topics.frames
        assert {"messaging.destination.partition.id", "messaging.kafka.offset"} <= set(process["attributes"])

        client = one(trace, "consumer-service", BATCH)
        assert (client["parent_id"], client["kind"]) == (process["context"]["span_id"], "SpanKind.CLIENT")
        assert client["attributes"]["http.response.status_code"] == 200
        assert publish_id in [link["context"]["span_id"] for link in client["links"]]

        server = one(trace, "inference-service", BATCH)
        assert (server["parent_id"], server["kind"]) == (client["context"]["span_id"], "SpanKind.SERVER")
        assert server["attributes"]["http.request.method"] == "POST"
        assert server["attributes"]["url.path"] == "/v1/infer/batch"
        batch = one(trace, "inference-service", "inference batch")
        assert server["context"]["span_id"] in ancestors(batch, trace)  # FastAPI's endpoint span between

        result_publish = one(trace, "consumer-service", f"{topics.results} publish")
        assert result_publish["parent_id"] == process["context"]["span_id"]
        headers = dict(record.headers() or [])
        assert traceparent_ids(headers[Header.TRACEPARENT].decode()) == (trace_id, result_publish["context"]["span_id"])

        analyzed = one(trace, "analytics-service", f"{topics.results} process")
        assert (analyzed["parent_id"], analyzed["kind"]) == (result_publish["context"]["span_id"], "SpanKind.CONSUMER")

        # The spans' durations agree with the result's timing fields (ms, rounded to 0.01 there).
        assert duration_ms(batch) >= doc.model_ms - 0.05
        assert batch["attributes"]["vidpipe.model_ms"] == pytest.approx(doc.model_ms, abs=0.01)
        assert duration_ms(server) >= doc.request_ms - 0.05 >= duration_ms(batch) - 0.05
        assert duration_ms(process) >= duration_ms(client) >= duration_ms(server) - 1.0
        # The client's span is the request as the consumer saw it: the service's time plus transport.
        assert -1.0 <= duration_ms(client) - doc.request_ms <= 500.0, (duration_ms(client), doc.request_ms)

    # Every event names the analytics span that made it, in its frame's trace.
    analytics_spans = {
        (s["context"]["trace_id"], s["context"]["span_id"]) for s in spans if s["kind"] == "SpanKind.CONSUMER"
    }
    for event in events:
        assert traceparent_ids(dict(event.headers())[Header.TRACEPARENT].decode()) in analytics_spans
