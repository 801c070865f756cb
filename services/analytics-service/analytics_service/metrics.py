"""Prometheus metrics of the analytics service: running counts per stream, line, direction, zone and class.

Counters count what this process saw since it started (Prometheus sums them across replicas); gauges
are the latest state of the streams this process owns, and are removed when its partitions move
(another replica reports them then). A stream removed from the registry loses every series, its
counters too: nothing reports it any more, and its label sets must not outlive it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics import MetricWrapperBase

from vidpipe.contract import LineCrossed, TrackerReset, ZoneEntered, ZoneLeft

Event = LineCrossed | ZoneEntered | ZoneLeft | TrackerReset


class AnalyticsMetrics:
    """Per-service registry, so several services in one process (tests) never collide."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.results = Counter("vidpipe_analytics_results", "Results analyzed", ["stream"], registry=r)
        self.invalid = Counter(
            "vidpipe_analytics_invalid_results",
            "Results skipped: not a valid FrameResult (field: the top-level field at fault, 'json' if unparseable)",
            ["field"],
            registry=r,
        )
        self.other_streams = Counter(
            "vidpipe_analytics_other_stream_results",
            "Results of streams this service does not analyze, skipped (reason: unlisted_stream, not in the streams "
            "file's list; stream_limit, beyond ANALYTICS_MAX_STREAMS): one series whatever their stream ids",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "vidpipe_analytics_duplicate_results", "Redelivered results skipped (seq and capture time not newer)",
            registry=r,
        )  # fmt: skip
        self.failed = Counter(
            "vidpipe_analytics_analysis_failures", "Valid results the engine failed on (skipped)", registry=r
        )
        self.events = Counter("vidpipe_analytics_events_published", "Events delivered to the events topic", ["type"],
                              registry=r)  # fmt: skip
        self.delivery_retries = Counter(
            "vidpipe_analytics_event_delivery_retries", "Events produced again after a failed delivery", registry=r
        )
        self.producer_restarts = Counter(
            "vidpipe_analytics_producer_restarts",
            "Producers replaced after a fatal error (unacknowledged events produced again)",
            registry=r,
        )
        self.line_crossings = Counter(
            "vidpipe_analytics_line_crossings",
            "Line crossings by stream, line, direction (in/out) and class",
            ["stream", "line", "direction", "label"],
            registry=r,
        )
        self.zone_entries = Counter(
            "vidpipe_analytics_zone_entries", "Zone entries by stream, zone and class", ["stream", "zone", "label"],
            registry=r,
        )  # fmt: skip
        self.zone_exits = Counter(
            "vidpipe_analytics_zone_exits", "Zone exits by stream, zone and class", ["stream", "zone", "label"],
            registry=r,
        )  # fmt: skip
        self.zone_occupancy = Gauge(
            "vidpipe_analytics_zone_occupancy",
            "Tracks inside a zone in the stream's latest frame, by class",
            ["stream", "zone", "label"],
            registry=r,
        )
        self.tracker_resets = Counter(
            "vidpipe_analytics_tracker_resets", "Tracker restarts by stream and reason", ["stream", "reason"],
            registry=r,
        )  # fmt: skip
        self.tracks = Gauge("vidpipe_analytics_tracks", "Tracks in the stream's latest frame", ["stream"], registry=r)
        self.latency = Gauge(
            "vidpipe_analytics_capture_latency_seconds",
            "Capture of the stream's latest frame to its analysis",
            ["stream"],
            registry=r,
        )
        self.lag = Gauge(
            "vidpipe_analytics_consumer_lag", "Results on the topic not yet consumed, by partition", ["partition"],
            registry=r,
        )  # fmt: skip
        self.ready = Gauge("vidpipe_analytics_ready", "1 once the worker has joined its consumer group", registry=r)
        self._occupancy_keys: dict[str, set[tuple[str, str]]] = {}
        # Every labelled counter series of a stream, so a removed stream's can all be dropped.
        self._counter_series: dict[str, set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}

    def _count(self, metric: Counter, *labels: str) -> None:
        metric.labels(*labels).inc()
        self._counter_series.setdefault(labels[0], set()).add((metric, labels))

    def observe_event(self, event: Event) -> None:
        """An event of an analyzed result (counted once, when produced; redelivery after a crash
        counts again in the new process)."""
        stream = event.stream_id
        if isinstance(event, LineCrossed):
            self._count(self.line_crossings, stream, event.line, event.direction, event.label)
        elif isinstance(event, ZoneEntered):
            self._count(self.zone_entries, stream, event.zone, event.label)
        elif isinstance(event, ZoneLeft):
            self._count(self.zone_exits, stream, event.zone, event.label)
        else:
            self._count(self.tracker_resets, stream, event.reason)

    def observe_frame(self, stream: str, tracks: int, latency_s: float, counts: Mapping[str, Any]) -> None:
        self._count(self.results, stream)
        self.tracks.labels(stream).set(tracks)
        self.latency.labels(stream).set(max(0.0, latency_s))
        seen: set[tuple[str, str]] = set()
        for zone, zone_counts in (counts.get("zones") or {}).items():
            for label, n in (zone_counts.get("occupancy") or {}).items():
                self.zone_occupancy.labels(stream, zone, label).set(n)
                seen.add((zone, label))
        # A class that left the zone is no longer in the counts: its gauge goes to 0, not stale.
        for zone, label in self._occupancy_keys.get(stream, set()) - seen:
            self.zone_occupancy.labels(stream, zone, label).set(0)
        self._occupancy_keys.setdefault(stream, set()).update(seen)

    def forget(self, streams: Iterable[str], counters: bool = False) -> None:
        """Drop the gauges of streams another replica owns now; with `counters`, every series of theirs
        (streams removed from the registry)."""
        for stream in streams:
            for zone, label in self._occupancy_keys.pop(stream, set()):
                _remove(self.zone_occupancy, stream, zone, label)
            _remove(self.tracks, stream)
            _remove(self.latency, stream)
            if counters:
                for metric, labels in self._counter_series.pop(stream, set()):
                    _remove(metric, *labels)

    def set_lag(self, lags: Mapping[int, int]) -> None:
        for partition, lag in lags.items():
            self.lag.labels(str(partition)).set(lag)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            _remove(self.lag, str(partition))


def _remove(metric: MetricWrapperBase, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
