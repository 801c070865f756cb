"""The analytics core, pure (no Kafka, no HTTP): results in, tracks, events and counts out.

One StreamAnalyzer per stream feeds each FrameResult's detections to a ByteTrack tracker
(analytics_service.tracking) and checks every track against the stream's lines and zones:

- Anchor: a track's position is the bottom centre of its box (where it touches the ground), in
  coordinates normalized to the frame, like the configured lines and zones.
- Lines: a crossing is counted when the anchor's movement between two observations of the same track
  goes from one side of the line to the other through the segment itself (within its extent; an end
  point counts). "in" is from the left-hand to the right-hand side walking from `start` to `end` with
  y down (vidpipe.contract, events). A track that touches the line and goes back is not counted; one
  that stops on the line is counted once it is seen strictly on the other side.
- Zones: zone_entered when a track's anchor is first seen inside (the boundary counts as inside);
  zone_left when it is next seen outside, or when the tracker drops the track (not matched for its
  lost-track buffer). dwell_s is the capture time from the frame it was first seen inside to the last
  frame it was seen inside, in both cases. A zone_left carries the label the zone_entered had, so
  per-label occupancy from the events always balances.
- Labels: the tracker is class-agnostic; a track's label is the one its matched detections scored
  highest in total so far (a car seen as a truck for one frame stays a car).
- Changed lines and zones (the stream's definition changed in the registry) apply from the stream's next
  analyzed frame, without a reset: the tracker and its ids go on. A line or zone whose geometry changed
  (or a new one) counts afresh from there; an unchanged one keeps its counts. A moved line forgets the
  side each track was on (a crossing needs two observations against the new line); a moved zone keeps
  its occupants and judges them at their next observation (zone_left if now outside). The occupants of a
  removed zone get zone_left at that frame, so occupancy taken from the events still balances.
- Resets (a TrackerReset event, a new tracker, occupancy and line sides forgotten, counts kept):
  the stream's first result ("start"), a later epoch ("epoch": a new publisher run), a seq lower than
  the last one with a later capture time in the same epoch ("seq_restart": a foreign producer without
  epochs restarting), a capture-time gap over reset_gap_s ("gap"). A result of an earlier epoch, or of
  the same epoch whose seq and capture time are both not after the last one, is a redelivery
  (at-least-once): it is skipped, reported with duplicate=True, and changes nothing. Gaps in seq
  (dead-lettered or sampled-out frames) are normal: the tracker sees the frames that arrive.

Within a frame, events come in this order: a reset; zone_left of the occupants of removed zones (by
track id, zones in their former order); zone_left of tracks the tracker dropped (by track
id, zones in configured order); then per track, by id: line crossings (lines in configured order),
then zone events (zones in configured order).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from vidpipe.analytics_config import StreamAnalytics
from vidpipe.contract import FrameResult, LineCrossed, TrackerReset, ZoneEntered, ZoneLeft

from .geometry import Point, anchor, inside_polygon, segments_intersect, side
from .tracking import ByteTracker

Event = LineCrossed | ZoneEntered | ZoneLeft | TrackerReset


class RegionLookup(Protocol):
    """Where a stream's lines and zones come from: a fixed AnalyticsConfig, or the live catalog
    (analytics_service.catalog) that follows the stream registry."""

    def for_stream(self, stream_id: str) -> StreamAnalytics: ...

    def frame_rate_for(self, stream_id: str) -> int | None:
        """The stream's frame rate where the source knows it (the registry's target_fps), else None."""
        ...


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTrack's parameters (supervision's names and meanings) and the analyzer's own.

    A track not matched for int(frame_rate / 30 * lost_track_buffer) updates (25 with the defaults)
    is dropped: ByteTrack counts its buffer in frames at 30 fps and scales it by the stream's rate.
    """

    track_activation_threshold: float = 0.25
    lost_track_buffer: int = 30  # frames
    minimum_matching_threshold: float = 0.8
    frame_rate: int = 25
    minimum_consecutive_frames: int = 1
    min_score: float = 0.0  # detections below are ignored
    reset_gap_s: float = 10.0  # capture-time gap that resets a stream's tracker


@dataclass(frozen=True)
class Track:
    track_id: int
    class_id: int
    label: str
    score: float  # this frame's detection
    box: tuple[float, float, float, float]  # this frame's detection: x1, y1, x2, y2 pixels


@dataclass
class FrameAnalysis:
    stream_id: str
    epoch: int
    seq: int
    capture_ts_us: int
    width: int
    height: int
    tracks: list[Track]
    events: list[Event]
    duplicate: bool = False  # a redelivered result, skipped: no tracks, no events


@dataclass
class _Presence:
    entered_us: int
    last_inside_us: int
    class_id: int
    label: str


@dataclass
class _TrackState:
    votes: dict[tuple[int, str], float] = field(default_factory=dict)  # summed scores
    line_sides: dict[str, tuple[int, Point]] = field(default_factory=dict)  # last strict side and where
    zones: dict[str, _Presence] = field(default_factory=dict)

    def label(self) -> tuple[int, str]:
        # Highest total score; a tie goes to the lower class id, so the choice never depends on order.
        return min(self.votes, key=lambda k: (-self.votes[k], k))


class StreamAnalyzer:
    def __init__(self, stream_id: str, spec: StreamAnalytics, settings: TrackerSettings) -> None:
        self.stream_id = stream_id
        self.spec = spec
        self.settings = settings
        self._lines_in: dict[str, Counter[str]] = {line.name: Counter() for line in spec.lines}
        self._lines_out: dict[str, Counter[str]] = {line.name: Counter() for line in spec.lines}
        self._entered: dict[str, Counter[str]] = {zone.name: Counter() for zone in spec.zones}
        self._pending: StreamAnalytics | None = None  # regions to apply at the next analyzed frame
        self._started = False
        self._last_epoch = 0
        self._last_seq: int | None = None
        self._last_capture_us: int | None = None
        self._new_tracker()

    def _new_tracker(self) -> None:
        s = self.settings
        self._tracker = ByteTracker(
            track_activation_threshold=s.track_activation_threshold,
            lost_track_buffer=s.lost_track_buffer,
            minimum_matching_threshold=s.minimum_matching_threshold,
            frame_rate=s.frame_rate,
            minimum_consecutive_frames=s.minimum_consecutive_frames,
        )
        self._tracks: dict[int, _TrackState] = {}

    def reset(self, reason: str, seq: int, capture_ts_us: int, now_us: int, epoch: int = 0) -> TrackerReset:
        """Start the tracker afresh: track ids start again at 1, occupancy and line sides are forgotten
        without zone_left events, counts are kept. The next result is taken as it comes (no seq check)."""
        self._started = True
        self._last_seq = None
        self._last_capture_us = None
        self._new_tracker()
        return TrackerReset(
            stream_id=self.stream_id,
            epoch=epoch,
            seq=seq,
            capture_ts_us=capture_ts_us,
            emitted_ts_us=now_us,
            reason=reason,
        )

    def _reset_reason(self, result: FrameResult) -> str | None:
        if not self._started:
            return "start"
        if result.epoch > self._last_epoch:
            return "epoch"
        if self._last_seq is not None and result.seq < self._last_seq:
            return "seq_restart"
        if self._last_capture_us is not None and result.capture_ts_us - self._last_capture_us > (
            self.settings.reset_gap_s * 1_000_000
        ):
            return "gap"
        return None

    def process(self, result: FrameResult, now_us: int) -> FrameAnalysis:
        analysis = FrameAnalysis(
            result.stream_id, result.epoch, result.seq, result.capture_ts_us, result.width, result.height, [], []
        )
        if self._started and (
            result.epoch < self._last_epoch
            or (
                result.epoch == self._last_epoch
                and self._last_seq is not None
                and self._last_capture_us is not None
                and result.seq <= self._last_seq
                and result.capture_ts_us <= self._last_capture_us
            )
        ):
            analysis.duplicate = True
            return analysis
        if (reason := self._reset_reason(result)) is not None:
            analysis.events.append(self.reset(reason, result.seq, result.capture_ts_us, now_us, result.epoch))
        self._last_epoch, self._last_seq, self._last_capture_us = result.epoch, result.seq, result.capture_ts_us
        if self._pending is not None:
            analysis.events += self._apply_regions(self._pending, result, now_us)

        detections = [d for d in result.detections if d.score >= self.settings.min_score]
        update = self._tracker.update(
            np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4),
            np.array([d.score for d in detections], dtype=np.float64),
        )

        def event_fields(track_id: int, class_id: int, label: str) -> dict[str, Any]:
            return {
                "stream_id": self.stream_id,
                "epoch": result.epoch,
                "seq": result.seq,
                "capture_ts_us": result.capture_ts_us,
                "emitted_ts_us": now_us,
                "track_id": track_id,
                "class_id": class_id,
                "label": label,
            }

        for track_id in update.removed:
            state = self._tracks.pop(track_id, None)
            if state is None:
                continue
            for zone in self.spec.zones:
                if (presence := state.zones.get(zone.name)) is not None:
                    analysis.events.append(self._left(zone.name, presence, event_fields(track_id, 0, "")))

        usable = result.width > 0 and result.height > 0
        for track_id, index in update.matched:
            detection = detections[index]
            state = self._tracks.setdefault(track_id, _TrackState())
            key = (detection.class_id, detection.label)
            state.votes[key] = state.votes.get(key, 0.0) + detection.score
            class_id, label = state.label()
            x1, y1, x2, y2 = detection.box
            analysis.tracks.append(Track(track_id, class_id, label, detection.score, (x1, y1, x2, y2)))
            if not usable:
                continue
            ax, ay = anchor((x1, y1, x2, y2))
            point = (ax / result.width, ay / result.height)
            fields = event_fields(track_id, class_id, label)
            for line in self.spec.lines:
                direction = self._crossing(state, line.name, line.start, line.end, point)
                if direction is not None:
                    (self._lines_in if direction == "in" else self._lines_out)[line.name][label] += 1
                    analysis.events.append(LineCrossed(**fields, line=line.name, direction=direction))
            for zone in self.spec.zones:
                presence = state.zones.get(zone.name)
                if inside_polygon(point, zone.polygon):
                    if presence is None:
                        state.zones[zone.name] = _Presence(result.capture_ts_us, result.capture_ts_us, class_id, label)
                        self._entered[zone.name][label] += 1
                        analysis.events.append(ZoneEntered(**fields, zone=zone.name))
                    else:
                        presence.last_inside_us = result.capture_ts_us
                elif presence is not None:
                    del state.zones[zone.name]
                    analysis.events.append(self._left(zone.name, presence, fields))
        return analysis

    def set_regions(self, spec: StreamAnalytics) -> None:
        """New lines and zones for this stream, applied from its next analyzed frame (a redelivered
        result changes nothing, so it applies nothing either)."""
        if spec == self.spec and self._pending is None:
            self.spec = spec  # the same regions: adopt the object, so the next identity check is cheap
            return
        self._pending = spec

    def _apply_regions(self, spec: StreamAnalytics, result: FrameResult, now_us: int) -> list[Event]:
        self._pending = None
        old_lines = {line.name: line for line in self.spec.lines}
        old_zones = {zone.name: zone for zone in self.spec.zones}
        for line in spec.lines:
            if old_lines.get(line.name) != line:  # new or moved: counted afresh, sides judged anew
                self._lines_in[line.name], self._lines_out[line.name] = Counter(), Counter()
                for state in self._tracks.values():
                    state.line_sides.pop(line.name, None)
        for name in old_lines.keys() - {line.name for line in spec.lines}:
            del self._lines_in[name], self._lines_out[name]
            for state in self._tracks.values():
                state.line_sides.pop(name, None)
        for zone in spec.zones:
            if old_zones.get(zone.name) != zone:
                self._entered[zone.name] = Counter()
        events: list[Event] = []
        removed = [name for name in old_zones if name not in {zone.name for zone in spec.zones}]
        for name in removed:
            del self._entered[name]
        frame = {"stream_id": self.stream_id, "epoch": result.epoch, "seq": result.seq,
                 "capture_ts_us": result.capture_ts_us, "emitted_ts_us": now_us}  # fmt: skip
        for track_id in sorted(self._tracks):
            for name in removed:
                if (presence := self._tracks[track_id].zones.pop(name, None)) is not None:
                    events.append(self._left(name, presence, {**frame, "track_id": track_id}))
        self.spec = spec
        return events

    @staticmethod
    def _crossing(state: _TrackState, name: str, start: Point, end: Point, point: Point) -> Literal["in", "out"] | None:
        now = side(start, end, point)
        if now == 0:
            return None  # on the line: wait until it is seen strictly on one side
        before = state.line_sides.get(name)
        state.line_sides[name] = (now, point)
        if before is None or before[0] == now or not segments_intersect(before[1], point, start, end):
            return None
        return "in" if now > 0 else "out"

    @staticmethod
    def _left(zone: str, presence: _Presence, fields: dict[str, Any]) -> ZoneLeft:
        dwell_s = (presence.last_inside_us - presence.entered_us) / 1_000_000
        fields = {**fields, "class_id": presence.class_id, "label": presence.label}
        return ZoneLeft(**fields, zone=zone, dwell_s=max(0.0, dwell_s))

    def counts(self) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
        """Crossings per line and direction, and per zone the tracks inside now and those that entered,
        each per label; counted since this analyzer was created (resets keep them)."""
        occupancy: dict[str, Counter[str]] = {zone.name: Counter() for zone in self.spec.zones}
        for state in self._tracks.values():
            for zone, presence in state.zones.items():
                occupancy[zone][presence.label] += 1

        def plain(counter: Counter[str]) -> dict[str, int]:
            return {label: counter[label] for label in sorted(counter) if counter[label]}

        return {
            "lines": {
                line.name: {"in": plain(self._lines_in[line.name]), "out": plain(self._lines_out[line.name])}
                for line in self.spec.lines
            },
            "zones": {
                zone.name: {"occupancy": plain(occupancy[zone.name]), "entered": plain(self._entered[zone.name])}
                for zone in self.spec.zones
            },
        }


class Analytics:
    """Every stream of one service instance; a stream's analyzer is made on its first result, and takes
    the stream's current lines and zones from `config` at every result (a change applies from there)."""

    def __init__(self, config: RegionLookup, settings: TrackerSettings) -> None:
        self.config = config
        self.settings = settings
        self._analyzers: dict[str, StreamAnalyzer] = {}

    def process(self, result: FrameResult, now_us: int | None = None) -> FrameAnalysis:
        """One result, in its stream's order; the stream's first result's events start with
        TrackerReset(reason="start")."""
        spec = self.config.for_stream(result.stream_id)
        rate = self.config.frame_rate_for(result.stream_id)
        settings = self.settings if rate is None else replace(self.settings, frame_rate=rate)
        analyzer = self._analyzers.get(result.stream_id)
        if analyzer is None:
            analyzer = StreamAnalyzer(result.stream_id, spec, settings)
            self._analyzers[result.stream_id] = analyzer
        else:
            if analyzer.spec is not spec:
                analyzer.set_regions(spec)
            # A new rate comes with a new run of the stream (its publisher restarts it under a new epoch),
            # whose tracker reset takes it.
            analyzer.settings = settings
        return analyzer.process(result, time.time_ns() // 1000 if now_us is None else now_us)

    def forget(self, stream_ids: Iterable[str]) -> None:
        """Drop those streams' state (partitions revoked); a later result starts them afresh."""
        for stream_id in stream_ids:
            self._analyzers.pop(stream_id, None)

    def analyzer(self, stream_id: str) -> StreamAnalyzer | None:
        return self._analyzers.get(stream_id)

    def streams(self) -> list[str]:
        return sorted(self._analyzers)
