"""The demo's analytics tools: counts from events equal the engine's, continuity as defined, the video
reads back."""

from __future__ import annotations

import cv2
import numpy as np

from tools.analytics_render import counts_from_events, render_video, replay, replayed_events, track_continuity
from vidpipe.analytics_config import parse_analytics
from vidpipe.storage import LocalStorage, frame_key

T0 = 1_764_000_000_000_000
CONFIG = parse_analytics(
    {
        "cam": {
            "lines": [{"name": "door", "start": [0.1, 0.5], "end": [0.9, 0.5]}],
            "zones": [{"name": "desk", "polygon": [[0.4, 0.4], [0.6, 0.4], [0.6, 0.8], [0.4, 0.8]]}],
        }
    }
)


def doc(seq: int, detections: list[dict], ts: int | None = None) -> dict:
    return {
        "stream_id": "cam",
        "seq": seq,
        "capture_ts_us": T0 + seq * 40_000 if ts is None else ts,
        "processed_ts_us": T0 + seq * 40_000 + 5_000,
        "width": 200,
        "height": 100,
        "model_name": "synthetic",
        "model_version": "1",
        "request_ms": 1.0,
        "detections": detections,
    }


def car(x: float, y: float, label: str = "car") -> dict:
    return {"class_id": 2, "label": label, "score": 0.9, "box": [x - 10, y - 20, x + 10, y]}


def test_counts_from_events_match_the_engine_across_a_reset():
    docs = [doc(i, [car(60 + 4 * i, 40 + 2 * i), car(150, 90 - 3 * i, "person")]) for i in range(12)]
    docs.append(doc(12, [car(100, 70)], ts=T0 + 60_000_000))  # a gap: reset, occupancy forgotten
    frames = replay(docs, CONFIG)
    assert [e.reason for e in replayed_events(frames) if e.type == "tracker_reset"] == ["start", "gap"]
    events = replayed_events(frames)
    assert counts_from_events(events, CONFIG.for_stream("cam")) == frames[-1].counts
    # at-least-once: a copy of every event, emitted later, changes nothing
    copies = [e.model_copy(update={"emitted_ts_us": e.emitted_ts_us + 1}) for e in events]
    assert counts_from_events(events + copies, CONFIG.for_stream("cam")) == frames[-1].counts
    assert frames[-1].counts["zones"]["desk"]["occupancy"] == {"car": 1}


def test_track_continuity_counts_pairs_of_overlapping_detections():
    still = [doc(i, [car(50, 50), car(150, 50)]) for i in range(5)]
    frames = replay(still, CONFIG)
    assert track_continuity(frames) == {"label": "car", "pairs": 8, "same_id": 8, "continuity": 1.0}
    # a detection the tracker does not report (score too low to start a track) breaks its pairs
    weak = [doc(i, [car(50, 50), {**car(150, 50), "score": 0.3}]) for i in range(5)]
    assert track_continuity(replay(weak, CONFIG))["continuity"] == 0.5
    assert track_continuity(replay(still, CONFIG), label="bus")["continuity"] is None


def test_the_annotated_video_is_written_and_reads_back(tmp_path):
    storage = LocalStorage(tmp_path / "archive")
    docs = [doc(i, [car(40 + 10 * i, 30 + 6 * i)]) for i in range(10)]
    for d in docs[:-1]:  # the last frame is missing from the archive: skipped
        image = np.full((100, 200, 3), 90, np.uint8)
        storage.put(frame_key("cam", 0, d["capture_ts_us"], d["seq"]), cv2.imencode(".jpg", image)[1].tobytes())
    video = render_video(tmp_path / "out.mp4", replay(docs, CONFIG), storage, CONFIG.for_stream("cam"), 25.0)
    assert video["frames_written"] == video["frames_read_back"] == 9
    assert video["fourcc"] in ("avc1", "mp4v")
