"""The analytics loop: results topic -> tracker, lines and zones (engine) -> events topic, then commit.

Delivery is at least once. A batch of results is analyzed, its events are produced (key = stream id,
so a stream's events keep its frame order within a partition), and the batch's offsets are committed
only once every event is acknowledged by the broker. A crash (or a failed commit) between delivery and
commit replays those results on the partition's next owner, so an event can be published twice;
readers that must not double count deduplicate on (stream_id, epoch, seq, type, track_id, line or zone).

Tracker state lives in this process and is not rebuilt: when a partition moves (rebalance, restart),
its streams are forgotten here and the first result of each stream on the new owner starts with a
tracker_reset event (reason "start"), as the contract describes. Track ids restart, zone occupancy is
forgotten without zone_left events, and a track crossing a line exactly at the hand-over may be missed
or counted by both owners.

A result that fails validation is counted (vidpipe_analytics_invalid_results_total{field}), logged with
the field at fault and skipped: the record is the consumer's output, already on a topic others read, so
it is not ours to dead-letter, and skipping never stalls the partition.

The streams analyzed are bounded (analytics_service.admission): the registry's or the streams file's
list, else the first ANALYTICS_MAX_STREAMS seen. A stream removed from the registry is forgotten here
(tracker, counts, view, every metric series) before the next batch; a changed line or zone applies from
the stream's next result (analytics_service.catalog, engine) without touching any other stream.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, Message
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError

from vidpipe import tracing
from vidpipe.contract import FrameResult, check_stream_id, decode_result, encode_event
from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings, ReplaceableProducer, consumer_config
from vidpipe.member import GroupMember, Stopped, TopicPart, record_headers
from vidpipe.topics import TopicSettings

from .admission import StreamAdmission
from .batch import Batch, invalid_field
from .catalog import RegionCatalog
from .engine import Analytics
from .metrics import AnalyticsMetrics
from .settings import AnalyticsSettings
from .view import LiveView

__all__ = ["AnalyticsWorker", "Batch", "Stopped", "invalid_field"]

log = logging.getLogger(__name__)

# A delivery still pending after this long pauses the partitions, so polling goes on (group membership)
# without taking more results.
_PAUSE_AFTER_S = 1.0


class AnalyticsWorker(GroupMember):
    stopped_note = "stopping with undelivered events: their results stay uncommitted for redelivery"

    def __init__(
        self,
        settings: AnalyticsSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        analytics: Analytics,
        view: LiveView,
        metrics: AnalyticsMetrics,
        heartbeat: Heartbeat | None = None,
        streams: Iterable[str] | RegionCatalog | None = None,
    ):
        """streams: the stream ids to analyze, or the catalog whose list follows the registry; None:
        the first settings.max_streams seen."""
        super().__init__(
            Consumer(consumer_config(kafka, settings.group_id, **{"client.id": "vidpipe-analytics"})),
            ReplaceableProducer(kafka, "vidpipe-analytics"),
            [topics.results],
            heartbeat or Heartbeat(stale_after_s=120),
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            log=log,
        )
        self.settings = settings
        self.topics = topics
        self.analytics = analytics
        self.view = view
        self.metrics = metrics
        self.processed = 0
        self.invalid = 0
        self.published = 0
        self._stream_partition: dict[str, TopicPart] = {}
        self._admission = StreamAdmission(streams, settings.max_streams, metrics.other_streams)

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        self.metrics.ready.set(0)
        try:
            self.leave(self.grace_left())
        finally:
            log.info("stopped: %d results analyzed, %d invalid skipped, %d events published",
                     self.processed, self.invalid, self.published)  # fmt: skip

    def run_once(self) -> None:
        self._forget(self._admission.relisted(), "removed from the registry", counters=True)
        records = self.take(self.settings.batch_max_results, self.settings.batch_max_wait_ms / 1000)
        batch = Batch()
        now_us = time.time_ns() // 1000
        for record in records:
            self._handle(record, batch, now_us)
        self.heartbeat.beat()
        if batch.offsets:
            self._deliver(batch)
            self.commit(batch.offsets, "those results will be redelivered (events repeated)")
        self.observe_lag(self.metrics.set_lag)

    # --- rebalance hooks (called from within consume/poll, between batches) ---------------------

    def on_assigned(self, parts: set[TopicPart]) -> None:
        self.metrics.ready.set(1)

    def on_released(self, parts: set[TopicPart]) -> None:
        """Forget the streams of partitions this member no longer owns: their next owner starts them
        afresh (tracker_reset "start"), and so would this member if they came back."""
        self._forget([s for s, tp in self._stream_partition.items() if tp in parts], "partitions released")
        self.metrics.forget_partitions(p for _, p in parts)

    def _forget(self, streams: list[str], why: str, counters: bool = False) -> None:
        for stream in streams:
            self._stream_partition.pop(stream, None)
        if streams:
            self.analytics.forget(streams)
            self.view.forget(streams)
            self.metrics.forget(streams, counters)
            log.info("forgot the state of %d streams (%s): %s", len(streams), why, ", ".join(sorted(streams)[:20]))

    # --- analysis ---------------------------------------------------------------------------

    def _handle(self, record: Message, batch: Batch, now_us: int) -> None:
        topic, partition, offset = record.topic(), record.partition(), record.offset()
        if topic is None or partition is None or offset is None:
            return
        batch.offsets[(topic, partition)] = offset + 1  # a skipped record is committed too: never a stall
        # The frame's trace goes on: this result's processing is a child of the consumer's result publish.
        with tracing.tracer().start_as_current_span(
            f"{topic} process",
            context=tracing.extract_headers(record_headers(record)),
            kind=SpanKind.CONSUMER,
            attributes=tracing.kafka_attributes(
                topic, "process", record.key(), partition, offset, self.settings.group_id
            ),
        ) as span:
            if not self._analyze(record, batch, now_us, topic, partition, offset):
                span.set_status(Status(StatusCode.ERROR, "skipped"))

    def _analyze(self, record: Message, batch: Batch, now_us: int, topic: str, partition: int, offset: int) -> bool:
        """False when the result was not analyzed (invalid, or the analysis failed)."""
        result = self._decode(record, topic, partition, offset)
        if result is None:
            return False
        if not self._admission.admit(result.stream_id):
            return True
        try:
            analysis = self.analytics.process(result, now_us)
            analyzer = self.analytics.analyzer(result.stream_id)
            counts = analyzer.counts() if analyzer is not None else {}
        except Exception:
            # A valid result the engine cannot take is a bug, not an outage: skip it, keep the stream.
            self.metrics.failed.inc()
            log.exception("analysis failed on %s seq %d (%s[%d]@%d); skipped", result.stream_id, result.seq,
                          topic, partition, offset)  # fmt: skip
            return False
        self._stream_partition[result.stream_id] = (topic, partition)
        if analysis.duplicate:  # redelivered (at least once): the engine skipped it, the view keeps its frame
            self.metrics.duplicates.inc()
            return True
        key = result.stream_id.encode()
        for event in analysis.events:
            batch.events.append((key, encode_event(event), event.type, tracing.inject_headers([])))
            self.metrics.observe_event(event)
        self.view.update(result, analysis, counts, now_us)
        self.metrics.observe_frame(
            result.stream_id, len(analysis.tracks), (now_us - result.capture_ts_us) / 1e6, counts
        )
        self.processed += 1
        return True

    def _decode(self, record: Message, topic: str, partition: int, offset: int) -> FrameResult | None:
        try:
            result = decode_result(record.value() or b"")
            check_stream_id(result.stream_id)  # it becomes a metric label and an archive path
            return result
        except ValidationError as exc:
            path, message = invalid_field(exc)
        except ValueError as exc:
            path, message = "stream_id", str(exc)
        self.invalid += 1
        self.metrics.invalid.labels(path.split(".")[0]).inc()
        log.warning("skipped an invalid result at %s[%d]@%d: %s: %s", topic, partition, offset, path, message[:300])
        return None

    # --- delivery, then commit --------------------------------------------------------------

    def _produce(self, batch: Batch, index: int) -> None:
        key, value, _, headers = batch.events[index]

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            batch.pending -= 1
            if error is None:
                batch.delivered.add(index)
            else:
                batch.error = str(error)

        # A producer that failed fatally is noted: the replacement produces this again (_deliver).
        if self.produce(self.topics.events, value, key=key, headers=headers or None, on_delivery=on_delivery):
            batch.pending += 1

    def _deliver(self, batch: Batch) -> None:
        """Produce the batch's events and wait until the broker has them all; failed deliveries are
        produced again (in their order) with backoff until they succeed or shutdown gives up (Stopped)."""
        todo = list(range(len(batch.events)))
        backoff = self.backoff()
        started = time.monotonic()
        while todo:
            for index in todo:
                self._produce(batch, index)
            while batch.pending and not self.producers.failed:
                self.wait(0.05, paused=time.monotonic() - started > _PAUSE_AFTER_S)
            if self.producers.failed:
                # A new producer produces what the broker has not acknowledged.
                self.metrics.producer_restarts.inc()
                batch.error = self.replace_producer()
                batch.pending = 0  # the failed producer's reports no longer count
            todo = sorted(set(range(len(batch.events))) - batch.delivered)
            if todo:
                self.metrics.delivery_retries.inc(len(todo))
                delay = backoff.next()
                log.warning("%d events undelivered (%s); producing them again in %.1fs, nothing committed",
                            len(todo), batch.error, delay)  # fmt: skip
                self.hold(delay)
        self.set_paused(False)
        types = Tally(kind for _, _, kind, _ in batch.events)
        for kind, n in types.items():
            self.metrics.events.labels(kind).inc(n)
        self.published += len(batch.events)
