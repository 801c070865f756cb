"""The live view's state: each stream's latest analyzed frame, its rate and latency, its counts.

The worker thread writes it after each result; the HTTP handlers read snapshots (frozen values under a
lock), so a page never sees a frame's tracks with another frame's counts.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vidpipe.contract import FrameResult

from .engine import FrameAnalysis, RegionLookup, Track

# Frames per stream whose archived JPEG the live view serves: the latest, and the few before it that a
# page may still ask for (it reads a stream's latest tracks, then fetches that frame, while new ones come).
RECENT_FRAMES = 32


@dataclass(frozen=True)
class FrameRef:
    """An analyzed frame's identity: what its archive key is made of."""

    epoch: int
    seq: int
    capture_ts_us: int


@dataclass(frozen=True)
class StreamView:
    stream_id: str
    epoch: int
    seq: int
    capture_ts_us: int
    processed_ts_us: int
    analyzed_ts_us: int
    width: int
    height: int
    tracks: tuple[Track, ...]
    counts: Mapping[str, Any]
    fps: float | None
    frames: int

    @property
    def latency_ms(self) -> float:
        """Capture to result (the consumer's processed time): what the pipeline adds before analytics."""
        return round(max(0, self.processed_ts_us - self.capture_ts_us) / 1000, 1)

    @property
    def analytics_latency_ms(self) -> float:
        """Capture to analysis here: latency_ms plus the results topic and this service."""
        return round(max(0, self.analyzed_ts_us - self.capture_ts_us) / 1000, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "epoch": self.epoch,
            "seq": self.seq,
            "capture_ts_us": self.capture_ts_us,
            "fps": self.fps,
            "latency_ms": self.latency_ms,
            "analytics_latency_ms": self.analytics_latency_ms,
            "frames": self.frames,
            "counts": self.counts,
        }


class LiveView:
    def __init__(self, config: RegionLookup, window: int = 50):
        """config: each stream's lines and zones (a fixed AnalyticsConfig, or the live catalog)."""
        self.config = config
        self.window = window
        self._lock = threading.Lock()
        self._latest: dict[str, StreamView] = {}
        self._captures: dict[str, deque[int]] = {}
        self._frames: dict[str, int] = {}
        self._recent: dict[str, deque[FrameRef]] = {}

    def update(self, result: FrameResult, analysis: FrameAnalysis, counts: Mapping[str, Any], now_us: int) -> None:
        stream = result.stream_id
        with self._lock:
            captures = self._captures.setdefault(stream, deque(maxlen=self.window))
            if captures and result.capture_ts_us < captures[-1]:
                captures.clear()  # the stream restarted (or replays): the rate starts over
            captures.append(result.capture_ts_us)
            self._frames[stream] = self._frames.get(stream, 0) + 1
            recent = self._recent.setdefault(stream, deque(maxlen=RECENT_FRAMES))
            recent.append(FrameRef(result.epoch, result.seq, result.capture_ts_us))
            self._latest[stream] = StreamView(
                stream_id=stream,
                epoch=result.epoch,
                seq=result.seq,
                capture_ts_us=result.capture_ts_us,
                processed_ts_us=result.processed_ts_us,
                analyzed_ts_us=now_us,
                width=analysis.width,
                height=analysis.height,
                tracks=tuple(analysis.tracks),
                counts=counts,
                fps=_rate(captures),
                frames=self._frames[stream],
            )

    def forget(self, streams: Iterable[str]) -> None:
        with self._lock:
            for stream in streams:
                self._latest.pop(stream, None)
                self._captures.pop(stream, None)
                self._frames.pop(stream, None)
                self._recent.pop(stream, None)

    def streams(self) -> list[StreamView]:
        with self._lock:
            return [self._latest[s] for s in sorted(self._latest)]

    def latest(self, stream_id: str) -> StreamView | None:
        with self._lock:
            return self._latest.get(stream_id)

    def recent_frame(self, stream_id: str, epoch: int | None = None, seq: int | None = None) -> FrameRef | None:
        """The stream's latest analyzed frame (no epoch or seq), or the recent one with that seq (and
        epoch, when given); None for a stream this replica does not hold or a frame not recent."""
        with self._lock:
            recent = self._recent.get(stream_id)
            if not recent:
                return None
            if seq is None and epoch is None:
                return recent[-1]
            for ref in reversed(recent):
                if (seq is None or ref.seq == seq) and (epoch is None or ref.epoch == epoch):
                    return ref
            return None

    def regions(self, stream_id: str) -> dict[str, list[dict[str, Any]]]:
        """The stream's lines and zones as they are now (normalized coordinates, x / width and y / height)."""
        spec = self.config.for_stream(stream_id)
        return {
            "lines": [{"name": x.name, "start": list(x.start), "end": list(x.end)} for x in spec.lines],
            "zones": [{"name": z.name, "polygon": [list(p) for p in z.polygon]} for z in spec.zones],
        }


def _rate(captures: deque[int]) -> float | None:
    """Frames per second of capture time over the window (None until two frames, or a zero span)."""
    if len(captures) < 2 or captures[-1] <= captures[0]:
        return None
    return round((len(captures) - 1) * 1e6 / (captures[-1] - captures[0]), 2)
