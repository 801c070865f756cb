"""The publisher's /metrics: its running counts, read from the live summary at scrape time (no second
set of counters to keep in step)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .publisher import PublishSummary

COUNTS = {
    "frames_read": "Frames read from the source",
    "frames_published": "Frames handed to the Kafka producer",
    "frames_delivered": "Frames acknowledged by the broker (acks=all)",
    "frames_failed": "Frames whose delivery failed",
    "frames_dropped": "Frames a live source dropped because the producer was backed up",
    "frames_sampled_out": "Frames skipped to meet the target frame rate",
    "frames_oversized": "Frames over the contract's frame size limit",
    "producer_restarts": "Producers replaced after a fatal error (their unacknowledged frames count as failed)",
}


class PublisherCollector(Collector):
    def __init__(self, summary: Callable[[], PublishSummary | None], reconnects: Callable[[], int]):
        self.summary = summary
        self.reconnects = reconnects

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        summary = self.summary()
        stream = summary.stream_id if summary else ""
        for name, help_text in COUNTS.items():
            family = CounterMetricFamily(f"publisher_{name}", help_text, labels=["stream"])
            family.add_metric([stream], getattr(summary, name) if summary else 0)
            yield family
        reconnects = CounterMetricFamily("publisher_reconnects", "Times a live source was reopened", labels=["stream"])
        reconnects.add_metric([stream], self.reconnects())
        yield reconnects
        # A camera's last frame: its age (time() - this) is what "silent" means, even for a stream at 1 frame/min.
        last = GaugeMetricFamily(
            "publisher_last_frame_timestamp_seconds",
            "Wall time of the last frame published (0: none yet)",
            labels=["stream"],
        )
        last.add_metric([stream], summary.last_published_unix_s if summary else 0.0)
        yield last
