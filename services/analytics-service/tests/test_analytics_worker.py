"""The analytics worker's edges without a broker: what a revoked partition forgets, and how an invalid
result is named."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition
from pydantic import ValidationError

from analytics_service.engine import Analytics, TrackerSettings
from analytics_service.metrics import AnalyticsMetrics
from analytics_service.settings import AnalyticsSettings
from analytics_service.view import LiveView
from analytics_service.worker import AnalyticsWorker, invalid_field
from vidpipe.analytics_config import AnalyticsConfig
from vidpipe.contract import FrameResult, decode_result
from vidpipe.kafka import KafkaSettings
from vidpipe.topics import TopicSettings


def _result(stream: str, seq: int) -> FrameResult:
    now = time.time_ns() // 1000
    return FrameResult(stream_id=stream, seq=seq, capture_ts_us=now, processed_ts_us=now, width=640, height=360,
                       model_name="m", model_version="1", request_ms=1.0,
                       detections=[{"class_id": 0, "label": "person", "score": 0.9, "box": [10, 10, 60, 120]}])  # fmt: skip


def test_a_revoked_partition_forgets_its_streams_only():
    analytics = Analytics(AnalyticsConfig(), TrackerSettings())
    view = LiveView(AnalyticsConfig())
    metrics = AnalyticsMetrics()
    # No broker: the clients are made but never connect (nothing subscribes).
    worker = AnalyticsWorker(
        AnalyticsSettings(), KafkaSettings(bootstrap="127.0.0.1:1"), TopicSettings(), analytics, view, metrics
    )
    try:
        for stream, partition in (("a", 0), ("b", 1)):
            result = _result(stream, 0)
            analysis = analytics.process(result)
            view.update(result, analysis, {}, time.time_ns() // 1000)
            metrics.observe_frame(stream, len(analysis.tracks), 0.1, {})
            worker._stream_partition[stream] = ("results", partition)
        worker.assigned.update({("results", 0), ("results", 1)})

        worker._on_revoke(worker.consumer, [TopicPartition("results", 0)])

        assert analytics.streams() == ["b"] and [v.stream_id for v in view.streams()] == ["b"]
        scraped = {s.labels.get("stream") for f in metrics.registry.collect() if f.name == "vidpipe_analytics_tracks"
                   for s in f.samples}  # fmt: skip
        assert scraped == {"b"}
        assert worker.assigned == {("results", 1)}
        # A later result of the forgotten stream starts it afresh, as on a new owner.
        assert [e.type for e in analytics.process(_result("a", 1)).events][:1] == ["tracker_reset"]
    finally:
        worker.consumer.close()


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b"{not json", "json"),
        (b"[]", "json"),
        (b'{"stream_id": "a"}', "seq"),
        (_result("a", 0).model_dump_json(exclude={"detections"}).encode(), "detections"),
        (_result("a", 0).model_dump_json().replace('"score":0.9', '"score":7').encode(), "detections.0.score"),
    ],
)
def test_an_invalid_result_is_named_by_its_field(value, field):
    with pytest.raises(ValidationError) as caught:
        decode_result(value)
    assert invalid_field(caught.value)[0] == field
