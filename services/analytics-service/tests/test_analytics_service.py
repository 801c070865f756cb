"""The analytics service as a process against the real broker, without the model: synthetic results
in, events, metrics and the live view out; invalid results skipped, a bad streams file refused, SIGTERM
a clean stop, and a new owner of the partitions starting the streams afresh."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.analytics_support import (
    GATE,
    HEIGHT,
    PASSAGE_FRAMES,
    PEN,
    WIDTH,
    analytics_env,
    analytics_topics,
    crossing_frame,
    first_inside,
    get_json,
    http,
    metric,
    passage_docs,
    produce_results,
    produce_values,
    result_doc,
    wait_for,
    write_streams_file,
)
from tests.helpers import TurnsFatal, committed_offsets, read_all, turn_fatal_after
from tools.harness.processes import analytics_process, analytics_url, free_port, ops_url, service_env
from tools.paths import ROOT
from vidpipe.contract import decode_event, encode_result
from vidpipe.storage import LocalStorage, frame_key

pytestmark = pytest.mark.broker

STREAM = "cam-a"


@pytest.fixture
def events_topics(kafka_settings):
    return analytics_topics(kafka_settings)


def _events(kafka_settings, topic: str, expect: int) -> list:
    records = read_all(kafka_settings, topic, expect=expect, timeout_s=60)
    return sorted(records, key=lambda r: (r.partition(), r.offset()))


def test_events_metrics_and_live_view_from_results(kafka_bootstrap, kafka_settings, events_topics, tmp_path):
    topics = events_topics
    group = f"analytics-{uuid.uuid4().hex[:6]}"
    streams_file = write_streams_file(tmp_path / "streams.yaml", {STREAM: {"lines": [GATE], "zones": [PEN]}})
    start_us = time.time_ns() // 1000 - 60_000_000
    docs = passage_docs(STREAM, 0, start_us)
    last = docs[-1]
    # One archived frame, for the live view's frame URL (the consumer writes these).
    archive = LocalStorage(tmp_path / "archive")
    jpeg = b"\xff\xd8\xff\xe0synthetic-jpeg-bytes\xff\xd9"
    archive.put(frame_key(STREAM, last.get("epoch", 0), last["capture_ts_us"], last["seq"]), jpeg)

    # Three invalid results in the middle of the stream's partition (same key): unparseable, a field
    # missing, a stream id that is no path segment. None may stall what follows.
    bad_id = result_doc("../etc", 5, start_us, [])
    missing = result_doc(STREAM, 5, start_us, [])
    del missing["detections"]
    produced = produce_results(kafka_settings, topics.results, docs[:5])
    produced += produce_values(
        kafka_settings,
        topics.results,
        [(STREAM.encode(), b"{not json"), (STREAM.encode(), encode_result(missing)),
         (STREAM.encode(), encode_result(bad_id))],
    )  # fmt: skip
    produced += produce_results(kafka_settings, topics.results, docs[5:])
    # A stream the streams file does not list: counted under one series and skipped, never analyzed.
    produced += produce_results(kafka_settings, topics.results, passage_docs("cam-unlisted", 0, start_us, frames=3))

    port = free_port()
    service = analytics_process(
        kafka_bootstrap, tmp_path, streams_file, str(tmp_path / "archive"), port, **analytics_env(topics, group)
    ).start()
    try:
        service.wait_ready(timeout_s=90)
        records = _events(kafka_settings, topics.events, expect=4)
        streams = wait_for(
            lambda: [s for s in get_json(analytics_url(service, "/api/streams"))["streams"] if s["seq"] == last["seq"]],
            "the stream's last result in /api/streams",
            service,
        )
        latest = get_json(analytics_url(service, f"/api/streams/{STREAM}/latest"))
        metrics_text = wait_for(
            lambda: (
                (text := http(ops_url(service, "/metrics"))[2].decode())
                and metric(text, "vidpipe_analytics_other_stream_results_total", reason="unlisted_stream") == 3
                and text
            ),
            "the unlisted stream's results counted",
            service,
        )
        page = http(analytics_url(service, "/"))
        script = http(analytics_url(service, "/live/live.js"))
        frame = http(analytics_url(service, latest["frame_url"]))
        refusals = {
            path: http(analytics_url(service, path))[0]
            for path in (
                f"/api/streams/{STREAM}/frame?seq={last['seq'] - 1}",  # recent, not archived
                f"/api/streams/{STREAM}/frame?seq={last['seq'] + 1}",  # never analyzed
                f"/api/streams/{STREAM}/frame?epoch=7",
                "/api/streams/nobody/frame",
                "/api/streams/..%2F..%2Fetc/frame",
                "/api/streams/.hidden/frame",
                f"/api/streams/{STREAM}/frame?seq=-1",
                f"/api/streams/{STREAM}/frame?seq=abc",
                f"/api/frames/{STREAM}/{last['seq']}?ts={last['capture_ts_us']}",  # no archive browsing
                "/api/streams/nobody/latest",
                "/api/streams/..%2Fx/latest",
                "/metrics",  # on the ops port only
                "/healthz",
            )
        }
        ops_refusals = {path: http(ops_url(service, path))[0] for path in ("/", "/api/streams", latest["frame_url"])}
        assert service.running, service.log_tail()
    finally:
        code = service.stop()
    assert code == 0, service.log_tail()

    # Events: the stream's start, then the box crosses the gate "in", enters the pen and leaves it.
    events = [decode_event(r.value()) for r in records]
    assert {r.key() for r in records} == {STREAM.encode()}
    assert [e.type for e in events] == ["tracker_reset", "line_crossed", "zone_entered", "zone_left"], events
    reset, crossed, entered, left = events
    assert reset.reason == "start" and reset.seq == 0
    assert (crossed.line, crossed.direction, crossed.seq, crossed.label) == ("gate", "in", crossing_frame(), "person")
    inside_from, inside_to = first_inside()
    assert (entered.zone, entered.seq) == ("pen", inside_from)
    assert (left.zone, left.seq, left.track_id) == ("pen", inside_to + 1, entered.track_id)
    assert left.dwell_s == pytest.approx((inside_to - inside_from) * 0.04)

    # Metrics: running counts, the invalid results by field, what was published.
    assert metric(metrics_text, "vidpipe_analytics_line_crossings_total", stream=STREAM, line="gate",
                  direction="in", label="person") == 1  # fmt: skip
    assert metric(metrics_text, "vidpipe_analytics_line_crossings_total", direction="out") is None
    assert metric(metrics_text, "vidpipe_analytics_zone_entries_total", stream=STREAM, zone="pen", label="person") == 1
    assert metric(metrics_text, "vidpipe_analytics_zone_exits_total", stream=STREAM, zone="pen", label="person") == 1
    assert metric(metrics_text, "vidpipe_analytics_zone_occupancy", stream=STREAM, zone="pen", label="person") == 0
    assert metric(metrics_text, "vidpipe_analytics_results_total", stream=STREAM) == PASSAGE_FRAMES
    for field in ("json", "detections", "stream_id"):
        assert metric(metrics_text, "vidpipe_analytics_invalid_results_total", field=field) == 1, field
    assert metric(metrics_text, "vidpipe_analytics_other_stream_results_total", reason="unlisted_stream") == 3
    assert metric(metrics_text, "vidpipe_analytics_results_total", stream="cam-unlisted") is None
    assert metric(metrics_text, "vidpipe_analytics_events_published_total", type="line_crossed") == 1
    assert metric(metrics_text, "vidpipe_analytics_tracker_resets_total", stream=STREAM, reason="start") == 1
    log = service.log_path.read_text()
    assert "detections" in log and "stream_id" in log and "invalid result" in log

    # The live view's API.
    (summary,) = streams
    assert summary["stream_id"] == STREAM and summary["fps"] == pytest.approx(25, rel=0.01)
    assert summary["latency_ms"] == pytest.approx(50)
    assert latest["seq"] == last["seq"] and (latest["width"], latest["height"]) == (WIDTH, HEIGHT)
    assert latest["lines"] == [GATE] and latest["zones"] == [PEN]
    (track,) = latest["tracks"]
    assert track["label"] == "person" and track["box"] == last["detections"][0]["box"]
    assert latest["counts"]["lines"]["gate"] == {"in": {"person": 1}, "out": {}}
    assert latest["counts"]["zones"]["pen"] == {"occupancy": {}, "entered": {"person": 1}}
    assert latest["frame_url"] == f"/api/streams/{STREAM}/frame?epoch=0&seq={last['seq']}"
    status, headers, body = frame
    assert (status, headers["content-type"], body) == (200, "image/jpeg", jpeg)  # the archive's bytes
    assert refusals == {
        f"/api/streams/{STREAM}/frame?seq={last['seq'] - 1}": 404,
        f"/api/streams/{STREAM}/frame?seq={last['seq'] + 1}": 404,
        f"/api/streams/{STREAM}/frame?epoch=7": 404,
        "/api/streams/nobody/frame": 404,
        "/api/streams/..%2F..%2Fetc/frame": 404,  # no route: '/' splits the path
        "/api/streams/.hidden/frame": 422,
        f"/api/streams/{STREAM}/frame?seq=-1": 422,
        f"/api/streams/{STREAM}/frame?seq=abc": 422,
        f"/api/frames/{STREAM}/{last['seq']}?ts={last['capture_ts_us']}": 404,
        "/api/streams/nobody/latest": 404,
        "/api/streams/..%2Fx/latest": 404,
        "/metrics": 404,
        "/healthz": 404,
    }
    assert ops_refusals == {"/": 404, "/api/streams": 404, latest["frame_url"]: 404}
    status, headers, body = page
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"
    assert b"<script>" not in body and b'src="/live/live.js"' in body  # no inline script
    assert script[0] == 200 and script[1]["content-type"].startswith("text/javascript")

    # Every record is committed, the skipped ones included: nothing stalls the partition.
    committed = committed_offsets(kafka_settings, group, topics.results, topics.partitions)
    assert sum(max(o, 0) for o in committed) == produced


def test_a_new_owner_starts_the_streams_afresh_and_does_not_repeat_committed_events(
    kafka_bootstrap, kafka_settings, events_topics, tmp_path
):
    """The documented choice: tracker state is not rebuilt. A second member of the group, after the
    first stopped, continues from the committed offsets, so nothing is repeated, and the first result
    it sees of a stream starts with tracker_reset "start"."""
    topics = events_topics
    env = analytics_env(topics, group=f"analytics-{uuid.uuid4().hex[:6]}")
    streams_file = write_streams_file(tmp_path / "streams.yaml", {STREAM: {"lines": [GATE], "zones": [PEN]}})
    start_us = time.time_ns() // 1000 - 60_000_000
    produce_results(kafka_settings, topics.results, passage_docs(STREAM, 0, start_us))

    first = analytics_process(kafka_bootstrap, tmp_path, streams_file, None, free_port(), name="first", **env).start()
    try:
        wait_for(
            lambda: metric(http(ops_url(first, "/metrics"))[2].decode(), "vidpipe_analytics_results_total",
                           stream=STREAM) == PASSAGE_FRAMES,
            "every result analyzed",
            first,
        )  # fmt: skip
    finally:
        assert first.stop() == 0, first.log_tail()

    later_us = start_us + PASSAGE_FRAMES * 40_000
    produce_results(kafka_settings, topics.results, passage_docs(STREAM, PASSAGE_FRAMES, later_us))
    second = analytics_process(kafka_bootstrap, tmp_path, streams_file, None, free_port(), name="second", **env)
    second.start()
    try:
        records = _events(kafka_settings, topics.events, expect=8)
        assert second.running, second.log_tail()
    finally:
        assert second.stop() == 0, second.log_tail()
    events = [decode_event(r.value()) for r in records]
    kinds = [(e.type, e.seq) for e in events]
    assert len(events) == 8, kinds  # 4 of each owner, none repeated
    assert kinds[4] == ("tracker_reset", PASSAGE_FRAMES) and events[4].reason == "start"
    assert [e.type for e in events[4:]] == ["tracker_reset", "line_crossed", "zone_entered", "zone_left"]


@pytest.mark.parametrize(
    ("analytics", "key"),
    [
        # A bow tie: the polygon crosses itself.
        ({STREAM: {"zones": [{"name": "pen", "polygon": [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]}]}},
         f"analytics.{STREAM}.zones[0].polygon"),
        ({STREAM: {"lines": [{"name": "gate", "start": [0.5, 1.5], "end": [0.5, 0.0]}]}},
         f"analytics.{STREAM}.lines[0].start"),
        ({"elsewhere": {"lines": [GATE]}}, "analytics.elsewhere"),
    ],
)  # fmt: skip
def test_a_bad_streams_file_exits_2_naming_the_key(tmp_path, analytics, key):
    streams_file = write_streams_file(tmp_path / "streams.yaml", analytics, streams=[STREAM])
    # Refused before anything connects: no broker needed (nothing listens on this port).
    env = service_env(KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", ANALYTICS_STREAMS_FILE=str(streams_file))
    done = subprocess.run(
        [sys.executable, "-m", "analytics_service"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert key in done.stderr and "ANALYTICS_STREAMS_FILE" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_sigterm_while_idle_exits_0_and_leaves_the_group(kafka_bootstrap, kafka_settings, events_topics, tmp_path):
    env = analytics_env(events_topics)
    service = analytics_process(kafka_bootstrap, tmp_path, None, None, free_port(), **env).start()
    try:
        service.wait_ready(timeout_s=90)
        assert get_json(analytics_url(service, "/api/streams")) == {"streams": []}
        assert get_json(ops_url(service, "/healthz")) == {"status": "ok"}
        service.signal(signal.SIGTERM)
        assert service.process.wait(60) == 0, service.log_tail()
    finally:
        service.stop()
    assert "stopped: 0 results analyzed" in service.log_tail()


def test_a_fatal_producer_error_is_replaced_and_every_event_delivered(kafka_settings, events_topics):
    from analytics_service.engine import Analytics, TrackerSettings
    from analytics_service.metrics import AnalyticsMetrics
    from analytics_service.settings import AnalyticsSettings
    from analytics_service.view import LiveView
    from analytics_service.worker import AnalyticsWorker, Batch
    from vidpipe.analytics_config import AnalyticsConfig

    metrics = AnalyticsMetrics()
    worker = AnalyticsWorker(
        AnalyticsSettings(group_id=f"fatal-{uuid.uuid4().hex[:6]}", retry_initial_s=0.1),
        kafka_settings,
        events_topics,
        Analytics(AnalyticsConfig(), TrackerSettings()),
        LiveView(AnalyticsConfig()),
        metrics,
    )
    turn_fatal_after(worker.producers, healthy=3)
    values = [f'{{"event": {i}}}'.encode() for i in range(10)]
    try:
        worker._deliver(Batch(events=[(STREAM.encode(), value, "test", []) for value in values]))
    finally:
        worker.close()
    # Events the failed producer held may be on the topic and produced again too: read until all are there.
    records = read_all(
        kafka_settings, events_topics.events, 0, 30, until=lambda found: {r.value() for r in found} >= set(values)
    )
    delivered = {r.value() for r in records}
    assert delivered == set(values), "every event reached the topic, through the replacement producer"
    assert metrics.registry.get_sample_value("vidpipe_analytics_producer_restarts_total") == 1
    assert not isinstance(worker.producer, TurnsFatal), "replaced by a real producer"
