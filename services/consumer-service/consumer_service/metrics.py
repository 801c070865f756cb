"""The consumer's Prometheus metrics and its running totals (logged when it stops)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Stream ids come from the frames topic's headers: past this many, a stream's latency joins OTHER_STREAMS,
# so whoever can write the topic cannot grow /metrics without bound.
MAX_LATENCY_STREAMS = 1000
OTHER_STREAMS = "_other"  # not a valid stream id: never one camera's series


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.processed = Counter("consumer_frames_processed", "Frames with a stored result", registry=registry)
        self.dead_lettered = Counter(
            "consumer_frames_dead_lettered",
            "Records sent to the dead-letter topic",
            ["stage", "code"],
            registry=registry,
        )
        self.stale = Counter(
            "consumer_frames_stale", "Frames skipped for exceeding the max frame age", registry=registry
        )
        self.retries = Counter(
            "consumer_retries",
            "Waits on an unavailable dependency (inference, storage), by what made it unavailable",
            ["dependency", "cause"],
            registry=registry,
        )
        self.delivery_failures = Counter(
            "consumer_delivery_failures",
            "Results and dead letters the cluster did not take (produced again after a backoff), by cause",
            ["topic", "cause"],
            registry=registry,
        )
        self.frames_inferred = Counter(
            "consumer_frames_inferred",
            "Frames sent to inference (retries, bisection and replays included; canaries not)",
            registry=registry,
        )
        self.producer_restarts = Counter(
            "consumer_producer_restarts",
            "Producers replaced after a fatal error (uncommitted batches replayed)",
            registry=registry,
        )
        self.inflight = Gauge("consumer_inflight_batches", "Batches polled but not yet committed", registry=registry)
        self.batch_seconds = Histogram(
            "consumer_batch_seconds",
            "Poll-to-commit time per batch",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=registry,
        )
        self.lag = Gauge(
            "consumer_lag", "Frames on the topic not yet consumed, by partition", ["partition"], registry=registry
        )
        self.capture_to_result = Histogram(
            "consumer_capture_to_result_seconds",
            "Capture of a frame to the broker's acknowledgement of its result, by stream",
            ["stream"],
            buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self._latency_streams: set[str] = set()

    def observe_result(self, stream: str, capture_ts_us: int) -> None:
        """A result the broker acknowledged: how long since its frame was captured."""
        if stream not in self._latency_streams:
            if len(self._latency_streams) >= MAX_LATENCY_STREAMS:
                stream = OTHER_STREAMS
            else:
                self._latency_streams.add(stream)
        self.capture_to_result.labels(stream).observe(max(0.0, time.time() - capture_ts_us / 1e6))

    def set_lag(self, lags: Mapping[int, int]) -> None:
        for partition, lag in lags.items():
            self.lag.labels(str(partition)).set(lag)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Partitions another member owns now: it reports their lag."""
        for partition in partitions:
            try:
                self.lag.remove(str(partition))
            except KeyError:
                pass


@dataclass
class Counts:
    processed: int = 0
    dead_lettered: int = 0
    stale: int = 0
