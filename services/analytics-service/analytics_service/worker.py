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

The streams analyzed are bounded, so tracker state and metric label sets cannot grow without end
whatever stream ids reach the results topic: with a streams list (ANALYTICS_STREAMS_FILE), only its
streams; without one, the first ANALYTICS_MAX_STREAMS streams this process sees. Results of any other
stream are counted under one series (vidpipe_analytics_other_stream_results_total{reason}) and skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from vidpipe.backoff import Backoff
from vidpipe.contract import FrameResult, check_stream_id, decode_result, encode_event
from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings, ReplaceableProducer, consumer_config
from vidpipe.topics import TopicSettings

from .engine import Analytics
from .metrics import AnalyticsMetrics
from .settings import AnalyticsSettings
from .view import LiveView

log = logging.getLogger(__name__)

TopicPart = tuple[str, int]
_LAG_EVERY_S = 5.0
# A delivery still pending after this long pauses the partitions, so polling goes on (group membership)
# without taking more results.
_PAUSE_AFTER_S = 1.0
# Results of other streams are logged at most this often (their stream ids are not kept).
_OTHER_LOG_EVERY_S = 60.0


class Stopped(Exception):
    """Shutdown came while events were undelivered: the batch stays uncommitted (replayed later)."""


@dataclass
class Batch:
    offsets: dict[TopicPart, int] = field(default_factory=dict)  # next offset to commit, per partition
    events: list[tuple[bytes, bytes, str]] = field(default_factory=list)  # key, value, type; in order
    pending: int = 0
    delivered: set[int] = field(default_factory=set)  # indexes the broker acknowledged
    error: str = ""


def invalid_field(exc: ValidationError) -> tuple[str, str]:
    """(the field at fault as a dotted path, the message) of a result's first validation error."""
    errors = exc.errors()
    if not errors:
        return "value", str(exc)
    first = errors[0]
    path = ".".join(str(p) for p in first["loc"])
    if first["type"] == "json_invalid" or not path:
        return "json", first["msg"]
    return path, first["msg"]


class AnalyticsWorker:
    def __init__(
        self,
        settings: AnalyticsSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        analytics: Analytics,
        view: LiveView,
        metrics: AnalyticsMetrics,
        heartbeat: Heartbeat | None = None,
        streams: Iterable[str] | None = None,
    ):
        """streams: the stream ids to analyze (the streams file's list); None: the first
        settings.max_streams seen."""
        self.settings = settings
        self.topics = topics
        self.analytics = analytics
        self.view = view
        self.metrics = metrics
        self.heartbeat = heartbeat or Heartbeat(stale_after_s=120)
        self.processed = 0
        self.invalid = 0
        self.published = 0
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._assigned: set[TopicPart] = set()
        self._stream_partition: dict[str, TopicPart] = {}
        self._listed = frozenset(streams) if streams is not None else None
        self._admitted: set[str] = set()  # streams analyzed since start: their metric label sets exist
        self._other_logged_at = -_OTHER_LOG_EVERY_S
        self.other_results = 0
        self._carry: list[Message] = []  # records polled while paused, processed next
        self._paused = False
        self._lag_at = 0.0
        self.consumer = Consumer(consumer_config(kafka, settings.group_id, **{"client.id": "vidpipe-analytics"}))
        self.producers = ReplaceableProducer(kafka, "vidpipe-analytics")

    @property
    def producer(self) -> Producer:
        return self.producers.current

    # --- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop_deadline = time.monotonic() + self.settings.shutdown_timeout_s
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        self.consumer.subscribe(
            [self.topics.results], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            while not self._stop.is_set():
                self.run_once()
        except Stopped:
            log.info("stopping with undelivered events: their results stay uncommitted for redelivery")
        finally:
            self.close()

    def close(self) -> None:
        self.heartbeat.ready = False
        self.metrics.ready.set(0)
        try:
            self.producer.flush(max(0.0, (self._stop_deadline or time.monotonic()) - time.monotonic()))
        finally:
            self.consumer.close()  # leaves the group: the partitions move at once
            log.info("stopped: %d results analyzed, %d invalid skipped, %d events published",
                     self.processed, self.invalid, self.published)  # fmt: skip

    def run_once(self) -> None:
        records = self._carry + self.consumer.consume(
            num_messages=max(1, self.settings.batch_max_results - len(self._carry)),
            timeout=self.settings.batch_max_wait_ms / 1000,
        )
        self._carry = []
        batch = Batch()
        now_us = time.time_ns() // 1000
        for record in records:
            if self._usable(record):
                self._handle(record, batch, now_us)
        self.heartbeat.beat()
        if batch.offsets:
            self._deliver(batch)
            self._commit(batch)
        self._observe_lag()

    # --- rebalance callbacks (called from within consume/poll, between batches) -----------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        if self._paused and partitions:
            consumer.pause(partitions)
        self.heartbeat.ready = True
        self.metrics.ready.set(1)
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release({(p.topic, p.partition) for p in partitions})
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release({(p.topic, p.partition) for p in partitions})
        log.warning("lost %s", sorted(p.partition for p in partitions))

    def _release(self, parts: set[TopicPart]) -> None:
        """Forget the streams of partitions this member no longer owns: their next owner starts them
        afresh (tracker_reset "start"), and so would this member if they came back."""
        self._assigned -= parts
        streams = [s for s, tp in self._stream_partition.items() if tp in parts]
        for stream in streams:
            del self._stream_partition[stream]
        if streams:
            self.analytics.forget(streams)
            self.view.forget(streams)
            self.metrics.forget(streams)
            log.info("forgot the tracker state of %d streams: %s", len(streams), ", ".join(sorted(streams)[:20]))
        self.metrics.forget_partitions(p for _, p in parts)
        self._carry = [r for r in self._carry if (r.topic(), r.partition()) not in parts]

    # --- analysis ---------------------------------------------------------------------------

    def _usable(self, record: Message) -> bool:
        error = record.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consume error: %s", error)
        return False

    def _handle(self, record: Message, batch: Batch, now_us: int) -> None:
        topic, partition, offset = record.topic(), record.partition(), record.offset()
        if topic is None or partition is None or offset is None:
            return
        batch.offsets[(topic, partition)] = offset + 1  # a skipped record is committed too: never a stall
        result = self._decode(record, topic, partition, offset)
        if result is None or not self._admit(result.stream_id):
            return
        try:
            analysis = self.analytics.process(result, now_us)
            analyzer = self.analytics.analyzer(result.stream_id)
            counts = analyzer.counts() if analyzer is not None else {}
        except Exception:
            # A valid result the engine cannot take is a bug, not an outage: skip it, keep the stream.
            self.metrics.failed.inc()
            log.exception("analysis failed on %s seq %d (%s[%d]@%d); skipped", result.stream_id, result.seq,
                          topic, partition, offset)  # fmt: skip
            return
        self._stream_partition[result.stream_id] = (topic, partition)
        if analysis.duplicate:  # redelivered (at least once): the engine skipped it, the view keeps its frame
            self.metrics.duplicates.inc()
            return
        key = result.stream_id.encode()
        for event in analysis.events:
            batch.events.append((key, encode_event(event), event.type))
            self.metrics.observe_event(event)
        self.view.update(result, analysis, counts, now_us)
        self.metrics.observe_frame(
            result.stream_id, len(analysis.tracks), (now_us - result.capture_ts_us) / 1e6, counts
        )
        self.processed += 1

    def _admit(self, stream: str) -> bool:
        """Whether this stream's results are analyzed: a listed stream, or one of the first max_streams
        (a stream once admitted stays admitted: its label sets exist already)."""
        if stream in self._admitted:
            return True
        if self._listed is not None:
            reason = "unlisted_stream"
            admitted = stream in self._listed
        else:
            reason = "stream_limit"
            admitted = len(self._admitted) < self.settings.max_streams
        if admitted:
            self._admitted.add(stream)
            return True
        self.other_results += 1
        self.metrics.other_streams.labels(reason).inc()
        now = time.monotonic()
        if now - self._other_logged_at >= _OTHER_LOG_EVERY_S:
            self._other_logged_at = now
            why = (
                "not in the streams file's list"
                if reason == "unlisted_stream"
                else f"beyond ANALYTICS_MAX_STREAMS={self.settings.max_streams}"
            )
            log.warning("skipping results of streams %s (e.g. %r; %d so far, "
                        "vidpipe_analytics_other_stream_results_total)", why, stream[:64], self.other_results)  # fmt: skip
        return False

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
        key, value, _ = batch.events[index]

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            batch.pending -= 1
            if error is None:
                batch.delivered.add(index)
            else:
                batch.error = str(error)

        while True:
            try:
                self.producer.produce(self.topics.events, key=key, value=value, on_delivery=on_delivery)
                batch.pending += 1
                return
            except BufferError:  # local queue full: serve delivery reports, then try again
                self._wait(0.1)
            except KafkaException as exc:
                if not self.producers.note_error(exc):
                    raise
                return  # produced again by the replacement (_deliver)

    def _deliver(self, batch: Batch) -> None:
        """Produce the batch's events and wait until the broker has them all; failed deliveries are
        produced again (in their order) with backoff until they succeed or shutdown gives up (Stopped)."""
        todo = list(range(len(batch.events)))
        backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        started = time.monotonic()
        while todo:
            for index in todo:
                self._produce(batch, index)
            while batch.pending and not self.producers.failed:
                self._wait(0.05, paused=time.monotonic() - started > _PAUSE_AFTER_S)
            if self.producers.failed:
                self._replace_producer(batch)
            todo = sorted(set(range(len(batch.events))) - batch.delivered)
            if todo:
                self.metrics.delivery_retries.inc(len(todo))
                delay = backoff.next()
                log.warning("%d events undelivered (%s); producing them again in %.1fs, nothing committed",
                            len(todo), batch.error, delay)  # fmt: skip
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    self._wait(0.1, paused=True)
        self._set_paused(False)
        types = Tally(kind for _, _, kind in batch.events)
        for kind, n in types.items():
            self.metrics.events.labels(kind).inc(n)
        self.published += len(batch.events)

    def _replace_producer(self, batch: Batch) -> None:
        """The producer failed fatally: a new one produces what the broker has not acknowledged."""
        log.error("producer failed fatally (%s); replacing it", self.producers.failed)
        self.metrics.producer_restarts.inc()
        batch.error = self.producers.replace()
        batch.pending = 0  # the failed producer's reports no longer count

    def _wait(self, timeout_s: float, paused: bool = False) -> None:
        """Serve delivery reports; once paused, poll the consumer too, so the group keeps this member.
        Gives up (Stopped) once shutdown's grace period is over."""
        if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
            raise Stopped()
        self.producer.poll(timeout_s if not paused else 0)
        if paused:
            self._set_paused(True)
            record = self.consumer.poll(timeout_s)
            if record is not None and self._usable(record):
                self._carry.append(record)
        self.heartbeat.beat()

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        assignment = self.consumer.assignment()
        if assignment:
            (self.consumer.pause if paused else self.consumer.resume)(assignment)
        self._paused = paused

    def _commit(self, batch: Batch) -> None:
        # Partitions revoked meanwhile are left to their new owner, which replays them.
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.offsets.items() if (t, p) in self._assigned]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed (%s); those results will be redelivered (events repeated)", exc)

    def _observe_lag(self) -> None:
        """Results not yet consumed per owned partition, from the high watermarks fetches bring (cheap)."""
        now = time.monotonic()
        if now - self._lag_at < _LAG_EVERY_S:
            return
        self._lag_at = now
        parts = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        if not parts:
            return
        try:
            positions = self.consumer.position(parts)
            lags: dict[int, int] = {}
            for tp in positions:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    lags[tp.partition] = max(0, high - tp.offset)
            self.metrics.set_lag(lags)
        except KafkaException as exc:
            log.debug("lag unavailable: %s", exc)
