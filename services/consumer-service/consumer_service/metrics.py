"""The consumer's Prometheus metrics and its running totals (logged when it stops)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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


@dataclass
class Counts:
    processed: int = 0
    dead_lettered: int = 0
    stale: int = 0
