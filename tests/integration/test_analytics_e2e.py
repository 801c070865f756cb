"""Analytics end to end with real parts: the sample video as two streams -> Kafka -> consumer -> inference
-> results topic -> analytics service -> events topic, checked against the contract, against each other
and against the engine replayed over the same results."""

from __future__ import annotations

import time
import uuid

import pytest
import yaml

from tests.fixtures.pipeline import topic_env
from tests.helpers import produce_frames, read_all, video_jpegs
from tools.analytics_render import EventCollector, counts_from_events, replay, replayed_events, track_continuity
from tools.demo import DEMO_LINES, DEMO_ZONES
from tools.harness.processes import (
    analytics_process,
    consumer_health_url,
    consumer_process,
    free_port,
    inference_process,
)
from vidpipe.analytics_config import load_streams_file
from vidpipe.contract import LineCrossed, TrackerReset, decode_event, decode_result
from vidpipe.kafka import ensure_topics

pytestmark = [pytest.mark.broker, pytest.mark.model]

FRAMES = 250
STREAMS = ("bikes-a", "bikes-b")


def comparable(event, times: bool = True) -> tuple:
    """An event without its stream id and emission time; without times=True, also without what derives
    from capture times (the two streams are produced in a burst, each frame stamped when it was sent)."""
    doc = event.model_dump()
    for key in ("stream_id", "emitted_ts_us") if times else ("stream_id", "emitted_ts_us", "capture_ts_us", "dwell_s"):
        doc.pop(key, None)
    return tuple(sorted(doc.items()))


def test_the_same_video_twice_gives_the_same_events_and_counts_and_cars_keep_their_tracks(
    kafka_bootstrap, kafka_settings, topics, default_model, sample_video, tmp_path
):
    """Two streams carry the same 250 JPEGs at once; the analytics service must publish, for each, events
    that follow the contract, start with a tracker_reset at seq 0 and come in frame order; the two
    streams' events and counts must be the same, and equal to the engine's replay of the results topic.

    Track continuity for cars: for each two consecutive processed frames of a stream, the car detections
    of the two frames are paired one to one by IoU >= 0.5 (maximum total IoU), a pair taken as the same car
    seen twice; continuity is the share of pairs whose two detections carry the same track id (a detection
    the tracker did not report counts as a break). It is measured on the replay, whose events are asserted
    equal to the service's, so its tracks are the service's.
    """
    events_topic = f"{topics.frames.removesuffix('.frames')}.events"
    ensure_topics(kafka_settings, topics.model_copy(update={"events": events_topic}).specs())
    env = {**topic_env(topics), "TOPICS_EVENTS": events_topic}
    streams_file = tmp_path / "streams.yaml"
    streams_file.write_text(
        yaml.safe_dump(
            {
                "streams": [{"name": s} for s in STREAMS],
                "analytics": {s: {"lines": DEMO_LINES, "zones": DEMO_ZONES} for s in STREAMS},
            }
        )
    )
    config = load_streams_file(streams_file)
    archive = tmp_path / "archive"

    # Detections must not depend on which frames share a model run, or the two streams could differ by
    # float noise: one frame per run, in f32 (bf16, chosen automatically on AMX CPUs, rounds differently
    # with the batch's shape). Measured here, onnxruntime and OpenVINO f32 give bit-identical outputs for
    # batches of 1 and 4 anyway; the pin keeps that true on any CPU.
    inference_port = free_port()
    inference = inference_process(
        inference_port, tmp_path, default_model, INFERENCE_MAX_BATCH_SIZE="1", INFERENCE_PRECISION="f32"
    )
    consumer = consumer_process(
        kafka_bootstrap,
        f"http://127.0.0.1:{inference_port}",
        str(archive),
        tmp_path,
        CONSUMER_GROUP_ID=f"analytics-e2e-{uuid.uuid4().hex[:6]}",
        **env,
    )
    analytics_port = free_port()
    analytics = analytics_process(
        kafka_bootstrap,
        tmp_path,
        streams_file,
        str(archive),
        analytics_port,
        ANALYTICS_GROUP_ID=f"analytics-e2e-{uuid.uuid4().hex[:6]}",
        **env,
    )
    events = EventCollector(kafka_bootstrap, events_topic, set(STREAMS))
    started = [inference.start()]
    try:
        inference.wait_ready(timeout_s=120)
        started.append(consumer.start())
        started.append(analytics.start())
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        analytics.wait_ready(timeout_s=60)

        jpegs = video_jpegs(sample_video, FRAMES)
        assert len(jpegs) == FRAMES
        for stream in STREAMS:
            produce_frames(kafka_settings, topics.frames, stream, jpegs)
        records = read_all(kafka_settings, topics.results, expect=2 * FRAMES, timeout_s=420)
        results = [decode_result(record.value()) for record in records]
        assert sorted((r.stream_id, r.seq) for r in results) == [(s, q) for s in STREAMS for q in range(FRAMES)]

        replayed = {s: replay([r for r in results if r.stream_id == s], config) for s in STREAMS}
        expected = {s: len(replayed_events(replayed[s])) for s in STREAMS}
        deadline = time.monotonic() + 120
        while any(len(events.events[s]) < expected[s] for s in STREAMS) and time.monotonic() < deadline:
            assert analytics.running, analytics.log_tail()
            events.poll(0.5)
        events.poll(1.0)  # anything more would be a duplicate or an event the replay did not make
        assert analytics.running, analytics.log_tail()
    finally:
        events.close()
        for process in reversed(started):
            process.stop()

    for value in events.raw:
        decode_event(value)  # every event follows the contract (the collector decoded them too)
    for stream in STREAMS:
        got = events.events[stream]
        assert got and isinstance(got[0], TrackerReset) and (got[0].reason, got[0].seq) == ("start", 0), got[:1]
        assert [e.seq for e in got] == sorted(e.seq for e in got), "a stream's events come in frame order"
        assert [comparable(e) for e in got] == [comparable(e) for e in replayed_events(replayed[stream])], (
            f"{stream}: the service's events differ from the engine's replay of the same results"
        )

    counts = {s: counts_from_events(events.events[s], config.for_stream(s)) for s in STREAMS}
    assert counts["bikes-a"] == counts["bikes-b"], counts
    same_video = [[comparable(e, times=False) for e in events.events[s]] for s in STREAMS]
    assert same_video[0] == same_video[1]
    crossings = [e for e in events.events["bikes-a"] if isinstance(e, LineCrossed)]
    assert {(e.line, e.direction, e.label) for e in crossings} >= {("street", "in", "car")}, counts
    assert counts["bikes-a"]["zones"]["road"]["entered"].get("car", 0) >= 1, counts

    for stream in STREAMS:
        continuity = track_continuity(replayed[stream], label="car")
        assert continuity["pairs"] >= 50, continuity  # enough cars seen twice for the share to mean something
        assert continuity["continuity"] >= 0.8, continuity
