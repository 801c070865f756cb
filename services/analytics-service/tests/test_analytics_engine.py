"""The analytics core on synthetic detections with known trajectories: exact crossings, zone events,
dwell times, resets and counts.

Frames are 1000 x 500 pixels, 40 ms apart; a detection is given by its anchor (bottom centre), so
the trajectories below are the anchor's path. The horizontal line `door` runs from (100, 250) to
(900, 250): walking from start to end (to the right) the left-hand side is the top of the picture,
so moving down is "in" and moving up is "out".
"""

from __future__ import annotations

import json

import pytest

from analytics_service.engine import Analytics, StreamAnalyzer, TrackerSettings
from analytics_service.geometry import anchor, inside_polygon, segments_intersect, side
from analytics_service.tracking import ByteTracker
from vidpipe.analytics_config import StreamAnalytics, parse_analytics
from vidpipe.contract import (
    FrameResult,
    LineCrossed,
    TrackerReset,
    ZoneEntered,
    ZoneLeft,
    decode_event,
    encode_event,
)

W, H = 1000, 500
T0 = 1_764_000_000_000_000
FRAME_US = 40_000
NOW = T0 + 10**9  # emitted_ts_us: fixed, so runs compare equal
DOOR = {"name": "door", "start": [0.1, 0.5], "end": [0.9, 0.5]}
DESK = {"name": "desk", "polygon": [[0.4, 0.4], [0.6, 0.4], [0.6, 0.8], [0.4, 0.8]]}  # x 400-600, y 200-400
LABELS = {"car": 2, "person": 0, "truck": 7}


def det(x: float, y: float, label: str = "car", score: float = 0.9, size: float = 80.0) -> dict:
    """A detection whose anchor (bottom centre) is at (x, y) pixels."""
    return {"class_id": LABELS[label], "label": label, "score": score, "box": [x - size / 2, y - size, x + size / 2, y]}


def result(seq: int, detections: list[dict], stream: str = "cam", ts: int | None = None) -> FrameResult:
    return FrameResult(
        stream_id=stream,
        seq=seq,
        capture_ts_us=T0 + seq * FRAME_US if ts is None else ts,
        processed_ts_us=T0,
        width=W,
        height=H,
        model_name="synthetic",
        model_version="1",
        request_ms=1.0,
        detections=detections,
    )


def analyzer(lines=(DOOR,), zones=(), **settings) -> StreamAnalyzer:
    spec = StreamAnalytics.model_validate({"lines": list(lines), "zones": list(zones)})
    return StreamAnalyzer("cam", spec, TrackerSettings(**settings))


def run(an: StreamAnalyzer, frames: list[list[dict]], first_seq: int = 0) -> list:
    """Every frame in order (seq from first_seq); all events, resets included."""
    events = []
    for offset, detections in enumerate(frames):
        events += an.process(result(first_seq + offset, detections), NOW).events
    return events


def summary(events) -> list[tuple]:
    """Events as comparable tuples, the tracker_reset of the first frame left out."""
    out = []
    for e in events:
        if isinstance(e, LineCrossed):
            out.append(("line", e.line, e.direction, e.track_id, e.label, e.seq))
        elif isinstance(e, ZoneEntered):
            out.append(("entered", e.zone, e.track_id, e.label, e.seq))
        elif isinstance(e, ZoneLeft):
            out.append(("left", e.zone, e.track_id, e.label, e.seq, round(e.dwell_s, 6)))
        elif not (isinstance(e, TrackerReset) and e.reason == "start" and e.seq == 0):
            out.append(("reset", e.reason, e.seq))
    return out


# --- geometry ------------------------------------------------------------------------------------


def test_sides_follow_the_contract_with_y_down():
    start, end = (0.0, 0.5), (1.0, 0.5)  # walking right: the left hand points up the picture
    assert side(start, end, (0.5, 0.2)) == -1  # above: left-hand side
    assert side(start, end, (0.5, 0.8)) == 1
    assert side(start, end, (0.5, 0.5)) == 0


def test_anchor_is_the_bottom_centre():
    assert anchor((10.0, 20.0, 30.0, 60.0)) == (20.0, 60.0)


def test_segments_and_polygons_are_closed():
    assert segments_intersect((0, 0), (1, 1), (0, 1), (1, 0))
    assert segments_intersect((0, 0), (1, 0), (1, 0), (2, 5))  # touching at an end point
    assert not segments_intersect((0, 0), (1, 0), (2, -1), (2, 1))
    square = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    assert inside_polygon((0.5, 0.5), square) and inside_polygon((1.0, 0.3), square)  # boundary is inside
    assert not inside_polygon((1.01, 0.5), square)
    concave = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.2), (0.0, 1.0)]
    assert not inside_polygon((0.5, 0.6), concave) and inside_polygon((0.5, 0.1), concave)


# --- lines ---------------------------------------------------------------------------------------


def test_moving_down_through_the_line_is_one_in_crossing_at_the_first_frame_past_it():
    # anchor y: 200, 210, ..., 300; y=250 (seq 5) is on the line, 260 (seq 6) is past it
    events = run(an := analyzer(), [[det(500, 200 + 10 * i)] for i in range(11)])
    assert events[0] == TrackerReset(stream_id="cam", seq=0, capture_ts_us=T0, emitted_ts_us=NOW, reason="start")
    assert summary(events) == [("line", "door", "in", 1, "car", 6)]
    crossing = events[1]
    assert crossing.capture_ts_us == T0 + 6 * FRAME_US and crossing.emitted_ts_us == NOW
    assert crossing.class_id == 2 and crossing.stream_id == "cam"
    assert an.counts() == {"lines": {"door": {"in": {"car": 1}, "out": {}}}, "zones": {}}


def test_the_direction_is_relative_to_the_line_as_configured():
    up = [[det(500, 300 - 10 * i)] for i in range(11)]
    assert summary(run(analyzer(), up)) == [("line", "door", "out", 1, "car", 6)]
    reversed_door = {"name": "door", "start": [0.9, 0.5], "end": [0.1, 0.5]}
    assert summary(run(analyzer(lines=[reversed_door]), up)) == [("line", "door", "in", 1, "car", 6)]
    # vertical, drawn downwards: the left hand points to the picture's right, so right-to-left is "in"
    aisle = {"name": "aisle", "start": [0.5, 0.1], "end": [0.5, 0.9]}
    leftwards = [[det(600 - 20 * i, 300)] for i in range(11)]
    assert summary(run(analyzer(lines=[aisle]), leftwards)) == [("line", "aisle", "in", 1, "car", 6)]


def test_two_objects_crossing_in_opposite_directions_at_once():
    frames = [[det(300, 200 + 10 * i, "car"), det(700, 300 - 10 * i, "person")] for i in range(11)]
    events = run(an := analyzer(), frames)
    assert summary(events) == [("line", "door", "in", 1, "car", 6), ("line", "door", "out", 2, "person", 6)]
    assert an.counts()["lines"] == {"door": {"in": {"car": 1}, "out": {"person": 1}}}


def test_touching_the_line_and_going_back_is_not_a_crossing():
    there_and_back = [200, 210, 220, 230, 240, 250, 240, 230, 220]
    assert summary(run(analyzer(), [[det(500, y)] for y in there_and_back])) == []
    # stopping on the line counts once the track is seen strictly on the other side
    stop_then_go = [230, 240, 250, 250, 250, 260, 270]
    assert summary(run(analyzer(), [[det(500, y)] for y in stop_then_go])) == [("line", "door", "in", 1, "car", 5)]


def test_a_crossing_beside_the_segment_is_not_counted_and_its_end_point_counts():
    # the line spans x 100..900: at x=950 the anchor crosses y=250 beyond the segment's end
    assert summary(run(analyzer(), [[det(950, 200 + 10 * i)] for i in range(11)])) == []
    # exactly through the end point (900, 250): the segment is closed
    assert summary(run(analyzer(), [[det(900, 200 + 10 * i)] for i in range(11)])) == [
        ("line", "door", "in", 1, "car", 6)
    ]


def test_back_and_forth_counts_every_crossing_of_the_same_track():
    path = [220, 235, 245, 255, 265, 255, 245, 235, 245, 255]
    assert summary(run(analyzer(), [[det(500, y)] for y in path])) == [
        ("line", "door", "in", 1, "car", 3),
        ("line", "door", "out", 1, "car", 6),
        ("line", "door", "in", 1, "car", 9),
    ]


def test_gaps_in_seq_are_tolerated_and_the_crossing_keeps_the_frame_that_showed_it():
    an = analyzer()
    events = []
    for seq in (0, 1, 2, 3, 5, 6, 9, 10, 11, 12):  # 4, 7, 8 dead-lettered or sampled out
        events += an.process(result(seq, [det(500, 200 + 10 * seq)]), NOW).events
    # y at seq 5 is 250 (on the line), seq 6 is 260
    assert summary(events) == [("line", "door", "in", 1, "car", 6)]


def test_an_occluded_track_keeps_its_id_and_its_crossing_is_counted_once_seen_again():
    frames = [[det(500, 200 + 8 * i)] if not 4 <= i <= 8 else [] for i in range(14)]
    events = run(analyzer(), frames)
    # last seen above at seq 3 (y 224), seen again below at seq 9 (y 272): the same track, one crossing
    assert summary(events) == [("line", "door", "in", 1, "car", 9)]


# --- zones ---------------------------------------------------------------------------------------


def test_zone_entered_and_left_with_dwell_from_entering_to_the_last_frame_inside():
    # x: 300, 320, ... at y=300; inside while 400 <= x <= 600 (the boundary counts): seq 5..15
    events = run(an := analyzer(lines=[], zones=[DESK]), [[det(300 + 20 * i, 300)] for i in range(19)])
    assert summary(events) == [
        ("entered", "desk", 1, "car", 5),
        ("left", "desk", 1, "car", 16, 0.4),  # (15 - 5) frames x 40 ms
    ]
    assert an.counts() == {"lines": {}, "zones": {"desk": {"occupancy": {}, "entered": {"car": 1}}}}


def test_a_lost_track_leaves_its_zone_when_the_tracker_drops_it():
    # inside from seq 5 (x=400) to seq 8 (x=460), then no detections at all
    frames = [[det(300 + 20 * i, 300)] for i in range(9)] + [[] for _ in range(30)]
    an = analyzer(lines=[], zones=[DESK])
    events = []
    for seq, detections in enumerate(frames):
        events += an.process(result(seq, detections), NOW).events
        if seq == 33:
            assert an.counts()["zones"]["desk"]["occupancy"] == {"car": 1}  # lost, not yet dropped
    # ByteTrack drops a track unmatched for more than int(25 / 30 * 30) = 25 updates: seq 8 + 26
    assert summary(events) == [("entered", "desk", 1, "car", 5), ("left", "desk", 1, "car", 34, 0.12)]
    assert an.counts()["zones"]["desk"] == {"occupancy": {}, "entered": {"car": 1}}


def test_occupancy_per_label_and_zone_left_keeps_the_label_it_entered_with():
    an = analyzer(lines=[], zones=[DESK])
    an.process(result(0, [det(500, 300, "car"), det(100, 100, "person")]), NOW)
    an.process(result(1, [det(505, 300, "car"), det(500, 320, "person", size=60)]), NOW)
    assert an.counts()["zones"]["desk"] == {"occupancy": {"car": 1, "person": 1}, "entered": {"car": 1, "person": 1}}


# --- labels, resets, redelivery --------------------------------------------------------------------


def test_a_track_keeps_its_majority_label_through_a_misclassified_frame():
    frames = [[det(500, 200 + 10 * i, "truck" if i == 6 else "car", 0.95 if i == 6 else 0.9)] for i in range(11)]
    an = analyzer()
    analyses = [an.process(result(i, f), NOW) for i, f in enumerate(frames)]
    assert {(t.track_id, t.label, t.class_id) for a in analyses for t in a.tracks} == {(1, "car", 2)}
    assert summary([e for a in analyses for e in a.events]) == [("line", "door", "in", 1, "car", 6)]
    # the track's box and score are this frame's detection
    assert analyses[6].tracks[0].box == tuple(frames[6][0]["box"]) and analyses[6].tracks[0].score == 0.95


def test_a_capture_gap_resets_the_tracker_and_forgets_occupancy_without_zone_left():
    an = analyzer(zones=[DESK])
    for seq in range(5):
        an.process(result(seq, [det(500, 300)]), NOW)
    assert an.counts()["zones"]["desk"]["occupancy"] == {"car": 1}
    late = T0 + 4 * FRAME_US + 10_000_001  # just over reset_gap_s = 10 s
    after = an.process(result(5, [det(500, 300)], ts=late), NOW)
    assert [type(e).__name__ for e in after.events] == ["TrackerReset", "ZoneEntered"]
    assert (after.events[0].reason, after.events[0].seq, after.events[0].capture_ts_us) == ("gap", 5, late)
    assert after.tracks[0].track_id == 1  # a new tracker life starts ids afresh
    assert an.counts()["zones"]["desk"] == {"occupancy": {"car": 1}, "entered": {"car": 2}}
    # exactly reset_gap_s is not a gap
    an2 = analyzer()
    an2.process(result(0, []), NOW)
    assert an2.process(result(1, [], ts=T0 + 10_000_000), NOW).events == []


def test_a_restarted_publisher_reusing_the_stream_id_resets_the_tracker():
    an = analyzer()
    run(an, [[det(500, 200 + 10 * i)] for i in range(4)])
    restart_ts = T0 + 5 * FRAME_US
    analysis = an.process(result(0, [det(100, 100)], ts=restart_ts), NOW)
    assert [(e.type, e.reason, e.seq) for e in analysis.events] == [("tracker_reset", "seq_restart", 0)]
    assert analysis.tracks[0].track_id == 1
    # the restarted stream's seqs go on normally from there
    assert an.process(result(1, [det(100, 110)], ts=restart_ts + FRAME_US), NOW).events == []


def test_a_redelivered_result_is_skipped_and_changes_nothing():
    frames = [[det(500, 200 + 10 * i)] for i in range(11)]
    an = analyzer()
    events = run(an, frames[:8])
    again = an.process(result(6, frames[6]), NOW)  # at-least-once: the same seq and capture time again
    assert again.duplicate and again.events == [] and again.tracks == []
    for seq in (8, 9, 10):
        events += an.process(result(seq, frames[seq]), NOW).events
    assert summary(events) == [("line", "door", "in", 1, "car", 6)]
    assert an.counts()["lines"]["door"]["in"] == {"car": 1}


def test_an_explicit_reset_takes_the_next_result_as_it_comes():
    an = analyzer()
    run(an, [[det(500, 200)] for _ in range(5)])
    event = an.reset("assigned", 4, T0 + 4 * FRAME_US, NOW)
    assert event.reason == "assigned" and event.type == "tracker_reset"
    # the frame that was being handled when the reset came is processed, not taken for a redelivery
    analysis = an.process(result(4, [det(500, 200)]), NOW)
    assert not analysis.duplicate and analysis.events == [] and analysis.tracks[0].track_id == 1


def test_min_score_ignores_weak_detections():
    an = analyzer(min_score=0.5)
    analysis = an.process(result(0, [det(500, 200, score=0.45), det(100, 100, score=0.9)]), NOW)
    assert [t.box for t in analysis.tracks] == [tuple(det(100, 100)["box"])]


def test_minimum_consecutive_frames_delays_a_new_track_id():
    an = analyzer(minimum_consecutive_frames=3)
    an.process(result(0, []), NOW)  # the tracker's first frame confirms at once; start after it
    seen = [[t.track_id for t in an.process(result(s, [det(500, 100 + 5 * s)]), NOW).tracks] for s in range(1, 5)]
    assert seen == [[], [], [1], [1]]


def test_counts_snapshot_is_json_ready():
    frames = [
        [det(300, 200 + 10 * i, "car"), det(700, 300 - 10 * i, "person"), det(350 + 10 * i, 300, "truck")]
        for i in range(11)
    ]
    an = analyzer(zones=[DESK])
    run(an, frames)
    counts = an.counts()
    assert counts == {
        "lines": {"door": {"in": {"car": 1}, "out": {"person": 1}}},
        "zones": {"desk": {"occupancy": {"truck": 1}, "entered": {"truck": 1}}},
    }
    assert json.loads(json.dumps(counts)) == counts


def test_events_follow_the_contract_on_the_wire():
    frames = [[det(300 + 20 * i, 200 + 10 * i)] for i in range(19)]
    events = run(analyzer(zones=[DESK]), frames)
    assert {type(e) for e in events} == {TrackerReset, LineCrossed, ZoneEntered, ZoneLeft}
    for event in events:
        assert decode_event(encode_event(event)) == event


def test_the_same_input_gives_the_same_output():
    frames = [[det(300 + 15 * i, 200 + 9 * i), det(800 - 12 * i, 350 - 11 * i, "person")] for i in range(20)]
    assert run(analyzer(zones=[DESK]), frames) == run(analyzer(zones=[DESK]), frames)


# --- all streams --------------------------------------------------------------------------------


def test_analytics_keeps_one_analyzer_per_stream_and_forgets_revoked_ones():
    config = parse_analytics({"lobby": {"lines": [DOOR]}})
    analytics = Analytics(config, TrackerSettings())
    first = analytics.process(result(0, [det(500, 200)], stream="lobby"), now_us=NOW)
    assert first.events == [TrackerReset(stream_id="lobby", seq=0, capture_ts_us=T0, emitted_ts_us=NOW, reason="start")]
    for seq in range(1, 11):
        analytics.process(result(seq, [det(500, 200 + 10 * seq)], stream="lobby"), now_us=NOW)
    other = analytics.process(result(7, [det(500, 200)], stream="yard"))  # no analytics entry: tracked only
    assert other.events[0].reason == "start" and other.events[0].emitted_ts_us > T0
    assert analytics.streams() == ["lobby", "yard"]
    assert analytics.analyzer("yard").counts() == {"lines": {}, "zones": {}}
    assert analytics.analyzer("lobby").counts()["lines"]["door"]["in"] == {"car": 1}

    analytics.forget(["lobby", "never-seen"])
    assert analytics.streams() == ["yard"] and analytics.analyzer("lobby") is None
    again = analytics.process(result(11, [], stream="lobby"), now_us=NOW)
    assert [e.reason for e in again.events] == ["start"]
    assert analytics.analyzer("lobby").counts()["lines"]["door"]["in"] == {}


def test_zero_sized_frames_are_tracked_without_line_or_zone_events():
    an = analyzer(zones=[DESK])
    analysis = an.process(result(0, [det(500, 300)]).model_copy(update={"width": 0, "height": 0}), NOW)
    assert [t.track_id for t in analysis.tracks] == [1] and summary(analysis.events) == []


@pytest.mark.parametrize("skip", [1, 2])
def test_the_tracker_follows_fast_motion_across_skipped_frames(skip):
    tracker = ByteTracker(frame_rate=25)
    ids = set()
    for i in range(0, 30, skip):
        update = tracker.update([[100 + 12 * i, 100, 180 + 12 * i, 180]], [0.9])
        ids.update(track_id for track_id, _ in update.matched)
    assert ids == {1}
