"""The analytics service following the stream registry, against the real broker: a line moved through the
control API counts from the stream's next frame while another stream's tracker goes on untouched; a
removed stream loses its state and its metric series; `apply` shows its diff, applies it, and refuses a
file with a bad zone whole; nothing is served without the token; a stream's state is its publisher's.
Results are fed to the results topic directly, as the consumer would write them."""

from __future__ import annotations

import json
import time

import pytest
from analytics_registry_support import call, registry_service

from tests.analytics_support import (
    FRAME_US,
    GATE,
    PASSAGE_FRAMES,
    PEN,
    centre_x,
    crossing_frame,
    http,
    metric,
    passage_docs,
    produce_results,
    result_doc,
    wait_for,
)
from tests.helpers import read_all
from tools.harness.processes import ServiceProcess, analytics_url, ops_url, publisher_group_process
from tools.paths import SAMPLE_VIDEO
from vidpipe.contract import decode_event

pytestmark = pytest.mark.broker

WALKER, STANDER = "cam-a", "cam-b"
# The gate moved left: the walking box crosses it at its 5th frame (centre x 164 > 160 px) instead of the 15th.
MOVED_GATE = {"name": "gate", "start": [0.25, 1.0], "end": [0.25, 0.0]}
STANDING_BOX = [450.0, 180.0, 510.0, 300.0]  # inside the pen, frame after frame


def _definition(stream: str, **fields) -> dict:
    return {"id": stream, "source": f"secret:{stream}", **fields}


def _standing(first_seq: int, start_us: int, frames: int = PASSAGE_FRAMES) -> list[dict]:
    return [result_doc(STANDER, first_seq + k, start_us + k * FRAME_US, [STANDING_BOX]) for k in range(frames)]


def _latest(service: ServiceProcess, stream: str, seq: int) -> dict:
    def check() -> dict | None:
        status, _, latest = call(service, "GET", f"/api/streams/{stream}/latest")
        return latest if status == 200 and latest["seq"] == seq else None

    return wait_for(check, f"{stream}'s result {seq} analyzed", service)


def _get(service: ServiceProcess, path: str) -> dict:
    status, _, answer = call(service, "GET", path)
    assert status == 200, (path, status, answer)
    return answer


def _metrics(service: ServiceProcess) -> str:
    return http(ops_url(service, "/metrics"))[2].decode()


def test_a_moved_line_counts_from_the_next_frame_and_a_removed_stream_is_forgotten(
    kafka_bootstrap, kafka_settings, tmp_path
):
    service, topics = registry_service(kafka_bootstrap, kafka_settings, tmp_path)
    service.start()
    try:
        service.wait_ready(timeout_s=90)
        assert call(service, "PUT", f"/api/registry/streams/{WALKER}", _definition(WALKER, lines=[GATE]))[0] == 201
        assert call(service, "PUT", f"/api/registry/streams/{STANDER}", _definition(STANDER, zones=[PEN]))[0] == 201
        start_us = time.time_ns() // 1000 - 60_000_000
        produce_results(kafka_settings, topics.results, passage_docs(WALKER, 0, start_us) + _standing(0, start_us))
        _latest(service, WALKER, PASSAGE_FRAMES - 1)
        before = _latest(service, STANDER, PASSAGE_FRAMES - 1)

        status, _, moved = call(service, "PATCH", f"/api/registry/streams/{WALKER}", {"lines": [MOVED_GATE]})
        assert status == 200 and moved["definition"]["lines"] == [MOVED_GATE]
        # Read-your-writes: the live view shows the moved line at once.
        assert call(service, "GET", f"/api/streams/{WALKER}/latest")[2]["lines"] == [MOVED_GATE]

        later_us = start_us + PASSAGE_FRAMES * FRAME_US
        produce_results(
            kafka_settings,
            topics.results,
            passage_docs(WALKER, PASSAGE_FRAMES, later_us) + _standing(PASSAGE_FRAMES, later_us),
        )
        walker = _latest(service, WALKER, 2 * PASSAGE_FRAMES - 1)
        after = _latest(service, STANDER, 2 * PASSAGE_FRAMES - 1)
        records = read_all(kafka_settings, topics.events, expect=5, timeout_s=60)
        events = sorted((decode_event(r.value()) for r in records), key=lambda e: (e.stream_id, e.seq))

        # The walker crossed the old gate in the first passage and the moved one in the second, at the
        # frame the moved line predicts (the old one would have counted it 10 frames later).
        crossings = [(e.seq, e.direction) for e in events if e.type == "line_crossed"]
        assert crossings == [(crossing_frame(), "in"), (PASSAGE_FRAMES + 4, "in")], events
        assert centre_x(4) > 0.25 * 640 > centre_x(3)
        assert walker["counts"]["lines"]["gate"] == {"in": {"person": 1}, "out": {}}  # counted afresh since the move
        # The other stream: one tracker all along, the same track, entered its zone once.
        assert [t["track_id"] for t in before["tracks"]] == [t["track_id"] for t in after["tracks"]] == [1]
        assert [(e.type, e.seq) for e in events if e.stream_id == STANDER] == [
            ("tracker_reset", 0),
            ("zone_entered", 0),
        ]
        assert [e.type for e in events if e.stream_id == WALKER].count("tracker_reset") == 1
        text = _metrics(service)
        assert metric(text, "vidpipe_analytics_zone_occupancy", stream=STANDER, zone="pen", label="person") == 1

        # Removing the standing stream drops its state and its series; the walker keeps its own.
        assert call(service, "DELETE", f"/api/registry/streams/{STANDER}")[0] == 204
        assert call(service, "GET", f"/api/registry/streams/{STANDER}")[0] == 404
        wait_for(
            lambda: [s["stream_id"] for s in _get(service, "/api/streams")["streams"]] == [WALKER],
            "the removed stream gone from the live view",
            service,
        )
        text = wait_for(
            lambda: (t := _metrics(service)) and f'stream="{STANDER}"' not in t and t, "its series dropped", service
        )
        assert metric(text, "vidpipe_analytics_results_total", stream=WALKER) == 2 * PASSAGE_FRAMES
        assert metric(text, "vidpipe_analytics_line_crossings_total", stream=WALKER, direction="in") == 2
        # Its results, should any still come, are not analyzed any more.
        produce_results(kafka_settings, topics.results, _standing(2 * PASSAGE_FRAMES, later_us + 10**6, frames=1))
        wait_for(
            lambda: metric(_metrics(service), "vidpipe_analytics_other_stream_results_total", reason="unlisted_stream"),
            "the removed stream's result skipped",
            service,
        )
        assert call(service, "GET", f"/api/streams/{STANDER}/latest")[0] == 404
        assert service.running, service.log_tail()
    finally:
        assert service.stop() == 0, service.log_tail()


def test_apply_shows_the_diff_applies_it_and_refuses_a_bad_file_whole(kafka_bootstrap, kafka_settings, tmp_path):
    service, _ = registry_service(kafka_bootstrap, kafka_settings, tmp_path)
    service.start()
    try:
        service.wait_ready(timeout_s=90)
        # Nothing without the token: not the API, not the page.
        assert call(service, "GET", "/api/registry/streams", token=None)[0] == 401
        assert call(service, "PUT", "/api/registry/streams/lobby", _definition("lobby"), token=None)[0] == 401
        assert call(service, "POST", "/api/registry/apply", {"streams": []}, token="not-the-token-at-all")[0] == 401
        assert http(analytics_url(service, "/"))[0] == 401

        assert call(service, "PUT", "/api/registry/streams/old", _definition("old"))[0] == 201
        assert call(service, "PUT", "/api/registry/streams/lobby", _definition("lobby", lines=[GATE]))[0] == 201
        desired = {"streams": [_definition("lobby", lines=[GATE], zones=[PEN]), _definition("yard", target_fps=2)]}

        status, _, dry = call(service, "POST", "/api/registry/apply?dry_run=true", desired)
        assert status == 200 and dry["applied"] is False
        assert dry["diff"].splitlines() == ["+ yard (added)", "~ lobby: zones [] -> ['pen']", "- old (removed)"]
        assert sorted(s["id"] for s in _get(service, "/api/registry/streams")["streams"]) == ["lobby", "old"]

        bow_tie = {"name": "pen", "polygon": [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]}
        bad = {"streams": [_definition("lobby", zones=[bow_tie]), _definition("yard")]}
        status, _, refused = call(service, "POST", "/api/registry/apply", bad)
        assert status == 422 and refused["error"]["field"] == "streams[lobby].zones[0].polygon", refused
        assert "intersects itself" in refused["error"]["message"]
        listed = _get(service, "/api/registry/streams")["streams"]
        assert {s["id"]: s["definition"]["zones"] for s in listed} == {"lobby": [], "old": []}  # nothing applied

        status, _, applied = call(service, "POST", "/api/registry/apply", desired)
        assert status == 200 and applied["applied"] and applied["removed"] == ["old"]
        listed = _get(service, "/api/registry/streams")["streams"]  # read-your-writes: right away
        assert {s["id"]: s["definition"]["target_fps"] for s in listed} == {"lobby": 5.0, "yard": 2.0}
        assert _get(service, "/api/registry/streams/lobby")["definition"]["zones"] == [PEN]
        assert call(service, "POST", "/api/registry/apply", desired)[2]["diff"] == "no changes"
        # What the publishers' scaling rule reads, on the ops port without a token.
        assert call(service, "PATCH", "/api/registry/streams/yard", {"enabled": False})[0] == 200
        count = json.loads(http(ops_url(service, "/streams/count"))[2])
        assert count == {"enabled": 1, "total": 2}
        assert service.running, service.log_tail()
    finally:
        assert service.stop() == 0, service.log_tail()


def test_a_streams_state_is_what_its_publisher_reports(kafka_bootstrap, kafka_settings, tmp_path):
    if not SAMPLE_VIDEO.exists():
        pytest.skip("the sample video is not fetched (make setup)")
    service, _ = registry_service(kafka_bootstrap, kafka_settings, tmp_path)
    service.start()
    topics = {k: v for k, v in service.env.items() if k.startswith("TOPICS_")}
    publisher = publisher_group_process(kafka_bootstrap, tmp_path, name="publisher-7", **topics)
    try:
        service.wait_ready(timeout_s=90)
        stream = _definition("lobby", loop=True, target_fps=2, resize="160")
        assert call(service, "PUT", "/api/registry/streams/lobby", {**stream, "source": str(SAMPLE_VIDEO)})[0] == 201
        publisher.start()

        def state(expected: str) -> dict | None:
            status = _get(service, "/api/registry/streams/lobby")["status"]
            return status if status["state"] == expected and status["reported_by"] == "publisher" else None

        publishing = wait_for(lambda: state("publishing"), "the publisher's status: publishing", service)
        assert publishing["pod"] == "publisher-7" and publishing["fps"] >= 0 and publishing["last_error"] is None
        call(service, "PATCH", "/api/registry/streams/lobby", {"source": str(tmp_path / "missing.mp4")})
        failed = wait_for(lambda: state("failed"), "the publisher's status: failed", service)
        assert failed["last_error"] and failed["pod"] == "publisher-7"
        assert service.running, service.log_tail()
    finally:
        publisher.stop()
        assert service.stop() == 0, service.log_tail()
