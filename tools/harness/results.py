"""The one reader of the results topic: per frame the first result and when it became visible, and how
many times each frame's result arrived (duplicates); plus the demo's and bench's summary of a run."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import numpy as np


class ResultCollector:
    """Reads the results topic with its own group and keeps, per frame, the first result seen.

    Frames are keyed (stream_id, seq): the demo, the bench and the fault cases run one publisher run
    (epoch) per stream. A second epoch of a stream would make two frames share a key, so it is refused
    rather than counted wrong (tools/soak reads whole identities, for runs with restarts)."""

    def __init__(self, bootstrap: str, results_topic: str, stream_ids: set[str] | None = None):
        from confluent_kafka import Consumer

        from vidpipe.kafka import KafkaSettings, consumer_config

        # KAFKA_AUTH / KAFKA_TLS from the environment apply, so this also reads MSK.
        settings = KafkaSettings(bootstrap=bootstrap)
        self.consumer = Consumer(consumer_config(settings, f"vidpipe-collector-{os.getpid()}-{time.time_ns()}"))
        self.consumer.subscribe([results_topic])
        self.stream_ids = stream_ids
        self.results: dict[tuple[str, int], dict] = {}
        self.received_us: dict[tuple[str, int], int] = {}
        self.arrivals: Counter[tuple[str, int]] = Counter()  # how often each frame's result arrived
        self.duplicates = 0
        self.epochs: dict[str, int] = {}  # the one publisher run seen per stream

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            # consume() waits out its whole timeout unless the batch fills: keep it short, so the
            # receive time measured here is the time the result became visible.
            for message in self.consumer.consume(500, timeout=min(left, 0.02)):
                if message.error():
                    continue
                now_us = time.time_ns() // 1000
                doc = json.loads(message.value())
                if self.stream_ids and doc["stream_id"] not in self.stream_ids:
                    continue
                key = (doc["stream_id"], doc["seq"])
                epoch = self.epochs.setdefault(doc["stream_id"], doc.get("epoch", 0))
                if doc.get("epoch", 0) != epoch:
                    raise RuntimeError(
                        f"stream {doc['stream_id']!r} has results of two publisher runs (epochs {epoch} and "
                        f"{doc.get('epoch', 0)}): this collector keys frames by seq, one run per stream"
                    )
                self.arrivals[key] += 1
                if key in self.results:
                    self.duplicates += 1
                    continue
                self.results[key] = doc
                self.received_us[key] = now_us

    def wait_for(self, expected: set[tuple[str, int]], timeout_s: float, alive=lambda: True) -> set[tuple[str, int]]:
        """Poll until every expected frame has a result; returns the ones still missing."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            missing = expected - self.results.keys()
            if not missing:
                return set()
            alive()
            self.poll(0.5)
        return expected - self.results.keys()

    def close(self) -> None:
        self.consumer.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, nearest rank (a value that occurred); 0 for no values."""
    return float(np.percentile(values, q, method="nearest")) if values else 0.0


def summarize(published: int, dropped: int, dead_lettered: int, collector: ResultCollector) -> dict:
    latencies = [(collector.received_us[k] - doc["capture_ts_us"]) / 1000 for k, doc in collector.results.items()]
    first_capture = min((d["capture_ts_us"] for d in collector.results.values()), default=0)
    last_result = max(collector.received_us.values(), default=0)
    span_s = (last_result - first_capture) / 1e6 if collector.results else 0.0
    classes = Counter(det["label"] for doc in collector.results.values() for det in doc["detections"])
    processed = len(collector.results)
    return {
        "frames_published": published,
        "frames_processed": processed,
        "frames_lost": max(0, published - processed - dead_lettered),
        "frames_dropped": dropped,
        "frames_dead_lettered": dead_lettered,
        "duplicate_results": collector.duplicates,
        "fps": round(processed / span_s, 2) if span_s > 0 else 0.0,
        "latency_ms": {
            **{f"p{q}": round(percentile(latencies, q), 1) for q in (50, 95, 99)},
            "max": round(max(latencies, default=0.0), 1),
        },
        "detections_by_class": dict(classes.most_common()),
    }
