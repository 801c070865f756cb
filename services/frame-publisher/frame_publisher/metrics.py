"""The publisher's /metrics: its running counts, read from the live summaries at scrape time (no second
set of counters to keep in step). One series per stream (label `stream`); in registry mode a stream the pod
stops carrying disappears from the next scrape, and `publisher_streams_carried` counts the ones it carries."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .publisher import COUNTED, PublishSummary

if TYPE_CHECKING:
    from .stream_runner import StreamRunner

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

Metric = CounterMetricFamily | GaugeMetricFamily


@dataclass(frozen=True)
class StreamFigures:
    stream: str
    counts: Mapping[str, int]
    reconnects: int
    last_published_unix_s: float
    fps: float | None = None  # registry mode: measured at each status interval
    source_failures: int | None = None  # registry mode: attempts that ended in an error


def stream_families(rows: Iterable[StreamFigures]) -> Iterator[Metric]:
    rows = list(rows)
    for name, help_text in COUNTS.items():
        family = CounterMetricFamily(f"publisher_{name}", help_text, labels=["stream"])
        for row in rows:
            family.add_metric([row.stream], row.counts.get(name, 0))
        yield family
    reconnects = CounterMetricFamily("publisher_reconnects", "Times a live source was reopened", labels=["stream"])
    for row in rows:
        reconnects.add_metric([row.stream], row.reconnects)
    yield reconnects
    # A camera's last frame: its age (time() - this) is what "silent" means, even for a stream at 1 frame/min.
    last = GaugeMetricFamily(
        "publisher_last_frame_timestamp_seconds",
        "Wall time of the last frame published (0: none yet)",
        labels=["stream"],
    )
    for row in rows:
        last.add_metric([row.stream], row.last_published_unix_s)
    yield last
    measured = [row for row in rows if row.fps is not None]
    if measured:
        fps = GaugeMetricFamily(
            "publisher_frames_per_second",
            "Frames published per second, over the last status interval",
            labels=["stream"],
        )
        failures = CounterMetricFamily(
            "publisher_source_failures", "Attempts to read the source that ended in an error", labels=["stream"]
        )
        for row in measured:
            fps.add_metric([row.stream], row.fps or 0.0)
            failures.add_metric([row.stream], row.source_failures or 0)
        yield fps
        yield failures


class PublisherCollector(Collector):
    """One stream, one process (single mode)."""

    def __init__(self, summary: Callable[[], PublishSummary | None], reconnects: Callable[[], int]):
        self.summary = summary
        self.reconnects = reconnects

    def collect(self) -> Iterator[Metric]:
        summary = self.summary()
        counts = {name: getattr(summary, name) for name in COUNTED} if summary else {}
        yield from stream_families(
            [
                StreamFigures(
                    summary.stream_id if summary else "",
                    counts,
                    self.reconnects(),
                    summary.last_published_unix_s if summary else 0.0,
                )
            ]
        )


class GroupCollector(Collector):
    """The streams a pod of the publisher group carries (registry mode)."""

    def __init__(self, runners: Callable[[], list[StreamRunner]]):
        self.runners = runners

    def collect(self) -> Iterator[Metric]:
        runners = self.runners()
        carried = GaugeMetricFamily("publisher_streams_carried", "Streams this publisher carries now")
        carried.add_metric([], len(runners))
        yield carried
        yield from stream_families(
            StreamFigures(r.stream_id, r.totals(), r.reconnects, r.last_published_unix_s, r.fps, r.failures)
            for r in runners
        )
