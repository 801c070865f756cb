"""Analytics off-line: replay a stream's results through the service's own engine, read its events from
the events topic, count both the same way, measure track continuity, and render an annotated video
(boxes with track ids, lines with their running counts, zones with their occupancy).

The replay is the same code with the same input as the analytics service (results in seq order, the
default TrackerSettings), so its tracks are the service's tracks and its counts should equal those
derived from the service's events.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from analytics_service.engine import Analytics, FrameAnalysis, TrackerSettings
from analytics_service.tracking import assign, iou_matrix
from vidpipe.analytics_config import AnalyticsConfig, StreamAnalytics
from vidpipe.contract import FrameResult, LineCrossed, TrackerReset, ZoneEntered, ZoneLeft, decode_event
from vidpipe.storage import Storage, frame_key

Event = LineCrossed | ZoneEntered | ZoneLeft | TrackerReset

PALETTE = [
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
    (147, 69, 52),
    (255, 115, 100),
]
LINE_COLOUR = (0, 255, 255)
ZONE_COLOUR = (255, 128, 0)


# --- replay and counts ---------------------------------------------------------------------------


@dataclass
class Replayed:
    result: FrameResult
    analysis: FrameAnalysis
    counts: dict[str, Any]  # the stream's counts after this frame


def replay(
    results: Iterable[FrameResult | dict[str, Any]], config: AnalyticsConfig, settings: TrackerSettings | None = None
) -> list[Replayed]:
    """Results through a fresh engine in (stream, epoch, seq) order, as the service sees one stream's results
    on its partition; emitted times are the results' processing times so a replay is reproducible."""
    docs = [r if isinstance(r, FrameResult) else FrameResult.model_validate(r) for r in results]
    analytics = Analytics(config, settings or TrackerSettings())
    out = []
    for result in sorted(docs, key=lambda r: (r.stream_id, r.epoch, r.seq)):
        analysis = analytics.process(result, now_us=result.processed_ts_us)
        analyzer = analytics.analyzer(result.stream_id)
        assert analyzer is not None
        out.append(Replayed(result, analysis, analyzer.counts()))
    return out


def counts_from_events(events: Iterable[Event], spec: StreamAnalytics) -> dict[str, Any]:
    """One stream's counts, in StreamAnalyzer.counts()'s shape, from its events in order: crossings per
    line, direction and label; per zone the labels that entered, and occupancy as entered minus left
    since the last tracker_reset (which forgets occupancy without zone_left events). An event published
    twice (the service delivers at least once) is counted once: a copy differs only in emitted_ts_us."""
    seen: set[tuple[Any, ...]] = set()
    lines: dict[str, dict[str, Counter[str]]] = {x.name: {"in": Counter(), "out": Counter()} for x in spec.lines}
    entered: dict[str, Counter[str]] = {z.name: Counter() for z in spec.zones}
    inside: dict[str, dict[tuple[int, str], str]] = {z.name: {} for z in spec.zones}  # (track, zone) -> label
    for event in events:
        if (key := event_key(event)) in seen:
            continue
        seen.add(key)
        if isinstance(event, TrackerReset):
            inside = {z.name: {} for z in spec.zones}
        elif isinstance(event, LineCrossed) and event.line in lines:
            lines[event.line][event.direction][event.label] += 1
        elif isinstance(event, ZoneEntered) and event.zone in entered:
            entered[event.zone][event.label] += 1
            inside[event.zone][(event.track_id, event.zone)] = event.label
        elif isinstance(event, ZoneLeft) and event.zone in inside:
            inside[event.zone].pop((event.track_id, event.zone), None)

    def plain(counter: Counter[str]) -> dict[str, int]:
        return {label: counter[label] for label in sorted(counter) if counter[label]}

    return {
        "lines": {name: {d: plain(c) for d, c in directions.items()} for name, directions in lines.items()},
        "zones": {
            name: {"occupancy": plain(Counter(inside[name].values())), "entered": plain(entered[name])}
            for name in entered
        },
    }


def replayed_events(frames: Iterable[Replayed]) -> list[Event]:
    return [event for frame in frames for event in frame.analysis.events]


def event_key(event: Event) -> tuple[Any, ...]:
    """What identifies an event apart from when it was emitted (a redelivered duplicate has the same key)."""
    doc = event.model_dump()
    doc.pop("emitted_ts_us")
    return tuple(sorted(doc.items()))


def track_continuity(frames: list[Replayed], label: str = "car", min_iou: float = 0.5) -> dict[str, Any]:
    """How often a tracked object keeps its id from one frame to the next.

    For each two consecutive processed frames of a stream (seq s and the next seq that has a result,
    with no tracker_reset in the later one), the `label` detections of the two frames are paired one to
    one by IoU >= min_iou (maximum total IoU): a pair is taken to be the same object seen twice. The
    continuity is the share of pairs in which both detections carry a track (the tracker reported them)
    and it is the same track id. Detections are matched to tracks by their exact box (a Track's box is
    its detection's box).
    """

    def labelled(frame: Replayed) -> tuple[np.ndarray, list[int | None]]:
        ids = {track.box: track.track_id for track in frame.analysis.tracks}
        dets = [d for d in frame.result.detections if d.label == label]
        boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
        return boxes, [ids.get((d.box[0], d.box[1], d.box[2], d.box[3])) for d in dets]

    pairs = same = 0
    for before, after in zip(frames, frames[1:], strict=False):
        if before.result.stream_id != after.result.stream_id or after.analysis.duplicate:
            continue
        if any(isinstance(e, TrackerReset) for e in after.analysis.events):
            continue
        (a_boxes, a_ids), (b_boxes, b_ids) = labelled(before), labelled(after)
        # the tracker's own assignment: minimum total (1 - IoU), pairs with IoU >= min_iou
        matched, _, _ = assign(1.0 - iou_matrix(a_boxes, b_boxes), 1.0 - min_iou)
        for i, j in matched:
            pairs += 1
            same += a_ids[i] is not None and a_ids[i] == b_ids[j]
    return {"label": label, "pairs": pairs, "same_id": same, "continuity": round(same / pairs, 4) if pairs else None}


# --- the events topic ----------------------------------------------------------------------------


class EventCollector:
    """Reads the events topic with its own group, keeping the events of the given streams in arrival
    order (a stream's events are in frame order: one key, one partition)."""

    def __init__(self, bootstrap: str, events_topic: str, stream_ids: set[str]):
        from confluent_kafka import Consumer

        from vidpipe.kafka import KafkaSettings, consumer_config

        settings = KafkaSettings(bootstrap=bootstrap)
        self.consumer = Consumer(consumer_config(settings, f"vidpipe-events-{os.getpid()}-{time.time_ns()}"))
        self.consumer.subscribe([events_topic])
        self.stream_ids = stream_ids
        self.events: dict[str, list[Event]] = {s: [] for s in stream_ids}
        self.raw: list[bytes] = []
        self.last_event_at = time.monotonic()

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for message in self.consumer.consume(500, timeout=min(left, 0.1)):
                if message.error() or message.value() is None:
                    continue
                event = decode_event(message.value())
                if event.stream_id in self.stream_ids:
                    self.raw.append(message.value())
                    self.events[event.stream_id].append(event)
                    self.last_event_at = time.monotonic()

    def count(self) -> int:
        return sum(len(v) for v in self.events.values())

    def close(self) -> None:
        self.consumer.close()


# --- rendering -----------------------------------------------------------------------------------


def _pixel(point: tuple[float, float], width: int, height: int) -> tuple[int, int]:
    return int(round(point[0] * width)), int(round(point[1] * height))


def _label(image: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int]) -> None:
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    x, y = origin
    x = min(max(0, x), max(0, image.shape[1] - tw - 4))
    y = max(th + 4, y)
    cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + 2), colour, -1)
    cv2.putText(image, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def annotate(image: np.ndarray, frame: Replayed, spec: StreamAnalytics) -> np.ndarray:
    height, width = image.shape[:2]
    for zone in spec.zones:
        points = np.array([_pixel(p, width, height) for p in zone.polygon], dtype=np.int32)
        cv2.polylines(image, [points], True, ZONE_COLOUR, 2)
        counts = frame.counts["zones"][zone.name]
        text = f"{zone.name}: {sum(counts['occupancy'].values())} inside, {sum(counts['entered'].values())} entered"
        # below the zone and beside the line's lower end, clear of the boxes that cross them
        _label(image, text, (int(points[:, 0].min()), int(points[:, 1].max()) + 16), ZONE_COLOUR)
    for line in spec.lines:
        start, end = _pixel(line.start, width, height), _pixel(line.end, width, height)
        cv2.line(image, start, end, LINE_COLOUR, 2, cv2.LINE_AA)
        # an arrow from the middle towards the right-hand side: the "in" direction
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        dx, dy = end[0] - start[0], end[1] - start[1]
        norm = max(1.0, float(np.hypot(dx, dy)))
        tip = (int(mx - dy / norm * 18), int(my + dx / norm * 18))
        cv2.arrowedLine(image, (int(mx), int(my)), tip, LINE_COLOUR, 2, cv2.LINE_AA, tipLength=0.4)
        counts = frame.counts["lines"][line.name]
        text = f"{line.name}: in {sum(counts['in'].values())}  out {sum(counts['out'].values())}"
        low = start if start[1] >= end[1] else end
        _label(image, text, (low[0] + 6, low[1]), LINE_COLOUR)
    for track in frame.analysis.tracks:
        colour = PALETTE[track.track_id % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in track.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        cv2.circle(image, ((x1 + x2) // 2, y2), 3, colour, -1)  # the anchor the lines and zones use
        _label(image, f"#{track.track_id} {track.label}", (x1, y1), colour)
    _label(image, f"{frame.result.stream_id}  seq {frame.result.seq}", (4, height - 6), (255, 255, 255))
    return image


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """FFmpeg reports an encoder it cannot open on fd 2; the fallback makes that noise, not an error."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_writer(path: Path, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, str]:
    """H.264 ('avc1') where this OpenCV's FFmpeg can encode it, else MPEG-4 Part 2 ('mp4v'), which
    opencv-python-headless's bundled FFmpeg always has (its H.264 encoder needs a hardware device)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for fourcc in ("avc1", "mp4v"):
        with _quiet_stderr():
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            return writer, fourcc
        writer.release()
    raise RuntimeError(f"{path}: no MP4 encoder available to OpenCV (tried avc1, mp4v)")


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while capture.read()[0]:
            count += 1
    finally:
        capture.release()
    return count


def render_video(
    path: Path, frames: list[Replayed], storage: Storage, spec: StreamAnalytics, fps: float
) -> dict[str, Any]:
    """Annotated frames, in seq order, from the archive; a frame missing from the archive is skipped.
    Returns what was written, checked by reading the file back."""
    writer: cv2.VideoWriter | None = None
    fourcc = ""
    written = 0
    size: tuple[int, int] | None = None
    try:
        for frame in frames:
            key = frame_key(frame.result.stream_id, frame.result.epoch, frame.result.capture_ts_us, frame.result.seq)
            try:
                data = storage.get(key)
            except (OSError, KeyError):
                continue
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            if writer is None:
                size = (image.shape[1], image.shape[0])
                writer, fourcc = open_writer(path, fps, size)
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size)
            writer.write(annotate(image, frame, spec))
            written += 1
    finally:
        if writer is not None:
            writer.release()
    readable = frame_count(path) if written else 0
    return {"path": str(path), "fourcc": fourcc, "frames_written": written, "frames_read_back": readable}
