"""The consumer loop, pipelined: polling, inference and archiving overlap; commits stay in order.

- The polling thread (the caller of run) consumes, triages, dead-letters bad records, hands each
  batch to a bounded pool of workers, publishes finished batches' results in batch order, and
  commits a batch's offsets only once its results and dead letters are acknowledged by the broker.
- Workers run inference and archive frames and results. Only outages are retried (inference or
  storage unreachable, overloaded, or answering in a way that blames no frame: a wrong path, a refused
  token, a proxy): a record whose content makes a step fail costs one dead letter, never a stall (see
  isolation.py for inference, archive.py for storage, _produce for the results topic).
- A result or dead letter the cluster does not take (a missing topic, a denied write, a timeout) stays
  with its batch and is produced again after a jittered exponential backoff, until it is delivered:
  its frames are not inferred or archived again, and nothing after it is committed meanwhile.
- An outage of any of these longer than CONSUMER_UNHEALTHY_AFTER_S makes /healthz answer 503 with why.
- A producer that fails fatally (librdkafka's idempotent producer can, after broker restarts) is
  replaced and every uncommitted batch replays: duplicates possible, loss not.
- At most `max_inflight_batches` batches are held, so memory stays bounded when inference is
  slower than the incoming stream; new records stay in Kafka. If the pipeline stays full (an
  outage), the partitions are paused and the polling thread keeps polling, so the group never
  evicts this member.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vidpipe.backoff import Backoff, backoff_delay
from vidpipe.contract import MAX_MESSAGE_BYTES, Header, dead_letter_headers, encode_result
from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings, ReplaceableProducer, consumer_config, is_fatal
from vidpipe.topics import TopicSettings

from .archive import Archiver, StorageUnavailable
from .deadline import SendDeadline
from .delivery import (
    CONTENT_DELIVERY_ERRORS,
    CONTENT_PRODUCE_ERRORS,
    Redelivery,
    cause_label,
    delivery_hint,
)
from .inference_client import BatchRefused, InferenceClient, InferenceUnavailable
from .isolation import BatchIsolator
from .ledger import Batch, Ledger, Rewind
from .reference import REFERENCE_JPEG
from .settings import ConsumerSettings
from .triage import Accepted, Rejected, ResultRefused, Stale, result_document, triage

log = logging.getLogger(__name__)

# Room kept for the dead-letter headers and Kafka's record overhead.
_DEAD_LETTER_MARGIN = 64 * 1024

R = TypeVar("R")


def record_headers(record: Message) -> list[tuple[str, bytes | None]] | None:
    """A consumed record's headers as the contract reads them. confluent-kafka types Message.headers()
    for producing too (a dict, or str values); a consumed record's are a list of (name, bytes | None)."""
    headers = record.headers()
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in items]


def record_origin(record: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record; only error events (dropped by _usable) lack them."""
    topic, partition, offset = record.topic(), record.partition(), record.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"record without a source position: {topic}[{partition}]@{offset}")
    return topic, partition, offset


class Stopped(Exception):
    """Shutdown was requested while waiting on a dependency; the batch stays uncommitted."""


Role = Literal["results", "dead_letter"]


@dataclass
class Outgoing:
    """A result or dead letter of a batch, kept until the broker acknowledges it, so that a delivery the
    cluster failed is produced again as it was, without its frame being inferred or archived again."""

    role: Role
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None
    on_content_error: Callable[[str], None] | None
    first_sent: float = 0.0  # monotonic; how long a failing topic has been failing is counted from here


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


class ConsumerWorker:
    def __init__(
        self,
        settings: ConsumerSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        archiver: Archiver,
        client: InferenceClient,
        registry: CollectorRegistry | None = None,
        heartbeat: Heartbeat | None = None,
    ):
        self.settings = settings
        self.topics = topics
        self.archiver = archiver
        self.client = client
        self.metrics = ConsumerMetrics(registry or CollectorRegistry())
        self.heartbeat = heartbeat or Heartbeat(stale_after_s=120)
        self.counts = Counts()
        self._stop = threading.Event()
        self._ledger = Ledger()
        self._carry: list[Message] = []  # records that arrived while the pipeline was full
        self._paused = False
        self._full_since: float | None = None
        self._deadline = SendDeadline(settings.max_frame_age_ms)
        self._frames_in_inference = 0
        self._load_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.max_inflight_batches, thread_name_prefix="batch")
        self._outages: dict[str, float] = {}  # dependency -> when its current outage began
        self._outage_lock = threading.Lock()
        self._known_good: bytes | None = None  # a frame inference processed recently (see isolation.py)
        self._isolator = BatchIsolator(
            infer=lambda images: self._retry_outage("inference", lambda: self._infer(images), (InferenceUnavailable,)),
            backoff=self._backoff,
            canary=self._canary,
            attempts=settings.inference_attempts,
        )
        self._redelivery: dict[Role, Redelivery] = {
            role: Redelivery(settings.retry_initial_s, settings.retry_max_s) for role in ("results", "dead_letter")
        }
        self.consumer = Consumer(
            consumer_config(
                kafka,
                settings.group_id,
                **{
                    "client.id": "vidpipe-consumer",
                    "queued.max.messages.kbytes": settings.prefetch_max_kbytes,
                },
            )
        )
        self.producers = ReplaceableProducer(kafka, "vidpipe-consumer")

    @property
    def producer(self) -> Producer:
        return self.producers.current

    # --- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self.consumer.subscribe(
            [self.topics.frames], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.close()

    def run_once(self) -> None:
        self._advance()
        full = len(self._ledger) >= self.settings.max_inflight_batches
        if full:
            self._full_since = self._full_since or time.monotonic()
            # Pausing purges librdkafka's pre-fetched records and resuming re-fetches them, a
            # stall per cycle; so a pipeline that is briefly full just waits (heartbeats run in
            # the background). Only a long wait (an outage) pauses and keeps polling, so the
            # group never evicts this member for not polling.
            if time.monotonic() - self._full_since >= self.settings.pause_after_s:
                self._set_paused(True)
            if self._paused:
                record = self.consumer.poll(0.05)
                if record is not None and self._usable(record):
                    self._carry.append(record)
                self.producer.poll(0)
            else:
                self.producer.poll(0.005)  # serves delivery reports while waiting
        else:
            self._full_since = None
            self._set_paused(False)
            want = max(1, self.settings.batch_max_frames - len(self._carry))
            records = self._carry + self.consumer.consume(
                num_messages=want, timeout=self.settings.batch_max_wait_ms / 1000
            )
            self._carry = []
            records = [r for r in records if self._usable(r)]
            if records:
                self._start_batch(records)
            self.producer.poll(0)
        self.heartbeat.beat()
        self.metrics.inflight.set(len(self._ledger))

    def close(self) -> None:
        """Finish batches that can finish, commit them, leave the group."""
        self._stop.set()  # workers waiting on a dead dependency give up; busy ones finish
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        while len(self._ledger) and time.monotonic() < deadline and not self._head_abandoned():
            if not self._advance():
                self.producer.poll(0.05)
        if len(self._ledger):
            log.info("leaving %d unfinished batches uncommitted for redelivery", len(self._ledger))
        self.heartbeat.ready = False
        try:
            self.producer.flush(10)
        finally:
            self.consumer.close()  # leaves the group so partitions move at once
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.client.close()
            self.archiver.close()

    def _head_abandoned(self) -> bool:
        """The oldest batch gave up (its dependency stayed down), or the cluster did not take its results
        or dead letters (stopping is no time to wait for a topic): nothing behind it can commit."""
        head = self._ledger.head
        if head is not None and head.undelivered:
            return True
        return bool(head and head.work and head.work.done() and head.work.exception() is not None)

    # --- rebalance callbacks ------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._ledger.assign((p.topic, p.partition) for p in partitions)
        if self._paused and partitions:
            consumer.pause(partitions)
        self.heartbeat.ready = True
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        # Give batches on these partitions a moment to finish, so their offsets are committed
        # here rather than replayed by the partitions' next owner.
        deadline = time.monotonic() + self.settings.revoke_timeout_s
        while self._ledger.holds(revoked) and time.monotonic() < deadline:
            if not self._advance():
                self.producer.poll(0.05)
        self._ledger.unassign(revoked)
        self._carry = [r for r in self._carry if (r.topic(), r.partition()) not in revoked]
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in partitions}
        self._ledger.unassign(lost)  # nothing of these can be committed any more
        self._carry = [r for r in self._carry if (r.topic(), r.partition()) not in lost]
        log.warning("lost %s", sorted(p.partition for p in partitions))

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        assignment = self.consumer.assignment()
        if assignment:
            (self.consumer.pause if paused else self.consumer.resume)(assignment)
        self._paused = paused

    # --- polling thread: triage, then hand off -------------------------------------------------

    def _usable(self, record: Message) -> bool:
        error = record.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consume error: %s", error)
        return False

    def _start_batch(self, records: list[Message]) -> None:
        now_us = time.time_ns() // 1000
        batch = self._ledger.open(records)
        for record in records:
            verdict = triage(
                record.value(),
                record_headers(record),
                self.settings.max_frame_bytes,
                self.settings.max_frame_age_ms,
                now_us,
                self.settings.max_pixels,
            )
            if isinstance(verdict, Accepted):
                batch.accepted.append((record, verdict))
            elif isinstance(verdict, Rejected):
                self._dead_letter(batch, record, verdict)
            elif isinstance(verdict, Stale):
                self.counts.stale += 1
                self.metrics.stale.inc()
        if batch.accepted:
            batch.work = self._pool.submit(self._infer_and_archive, batch)

    # --- workers: inference and archive -------------------------------------------------------

    def _drop_stale(self, batch: Batch) -> None:
        """Skip (and count) frames that would outlive CONSUMER_MAX_FRAME_AGE_MS before their result
        exists (see deadline.py); triage checked their age when polled, they may have waited since."""
        if not self.settings.max_frame_age_ms:
            return
        now_us = time.time_ns() // 1000
        ages_ms = [(now_us - frame.meta.capture_ts_us) / 1000 for _, frame in batch.accepted]
        with self._load_lock:
            in_time = self._deadline.in_time(ages_ms, self._frames_in_inference)
        fresh = [item for item, ok in zip(batch.accepted, in_time, strict=True) if ok]
        skipped = len(batch.accepted) - len(fresh)
        if skipped:
            batch.accepted = fresh
            self.counts.stale += skipped
            self.metrics.stale.inc(skipped)

    def _infer_and_archive(
        self, batch: Batch
    ) -> tuple[list[tuple[Message, dict[str, Any]]], list[tuple[Message, Rejected]]]:
        """Results to publish and records to dead-letter; raises only Stopped (or a bug)."""
        self._drop_stale(batch)
        if not batch.accepted:
            return [], []
        with self._load_lock:
            self._frames_in_inference += len(batch.accepted)
            batch.load = self._frames_in_inference
        batch.sent = time.perf_counter()
        try:
            isolated = self._retry_outage(
                "inference", lambda: self._isolator.run([f.value for _, f in batch.accepted]), (InferenceUnavailable,)
            )
        finally:
            with self._load_lock:
                self._frames_in_inference -= len(batch.accepted)
        processed_us = time.time_ns() // 1000
        done: list[tuple[Message, Accepted, dict[str, Any]]] = []
        refused: list[tuple[Message, Rejected]] = []
        for (record, frame), outcome in zip(batch.accepted, isolated.outcomes, strict=True):
            if outcome.result is None:
                refused.append((record, Rejected(outcome.reason, "inference", outcome.code, outcome.attempts)))
                continue
            try:
                doc = result_document(
                    frame.meta, outcome.result, isolated.model_name, isolated.model_version, processed_us
                )
            except ResultRefused as exc:
                refused.append((record, Rejected(str(exc), "result", exc.code, outcome.attempts)))
                continue
            done.append((record, frame, doc))
        if not done:
            return [], refused
        self._known_good = done[-1][1].value
        failed = self._retry_outage(
            "storage", lambda: self.archiver.store([(f.meta, f.value, d) for _, f, d in done]), (StorageUnavailable,)
        )
        for index, reason in failed.items():
            refused.append((done[index][0], Rejected(reason, "archive", "archive_refused")))
        return [(record, doc) for index, (record, _, doc) in enumerate(done) if index not in failed], refused

    def _infer(self, images: list[bytes]) -> Any:
        self.metrics.frames_inferred.inc(len(images))
        return self.client.infer_batch(images)

    def _canary(self) -> BaseException | None:
        """Does the service still answer a frame it processed before with a result? None if so, else the
        error instead. Before this process has such a frame, a small valid JPEG stands in (reference.py)."""
        try:
            answer = self.client.infer_batch([self._known_good or REFERENCE_JPEG])
        except Exception as exc:  # whatever it is, the good frame did not get its result
            return exc
        error = answer.items[0].get("error") if answer.items else {"message": "no item"}
        if error is not None:
            refused = BatchRefused(f"per-item error: {str(error)[:200]}")
            refused.cause = "item_error"
            return refused
        return None

    def _backoff(self, attempt: int) -> None:
        delay = backoff_delay(attempt, self.settings.retry_initial_s, self.settings.retry_max_s)
        if self._stop.wait(delay):
            raise Stopped()

    def _retry_outage(self, dependency: str, action: Callable[[], R], retry_on: tuple[type[BaseException], ...]) -> R:
        """Retry with jittered exponential backoff while `dependency` is out (retry_on), until done or
        stopping (then Stopped). Past CONSUMER_UNHEALTHY_AFTER_S of outage, /healthz says so."""
        backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        while True:
            try:
                result = action()  # work that can finish does, even while stopping
            except retry_on as exc:
                if self._stop.is_set():
                    raise Stopped() from exc
                self.metrics.retries.labels(dependency, str(getattr(exc, "cause", None) or type(exc).__name__)).inc()
                self._outage_continues(dependency, str(exc))
                delay = backoff.next()
                log.warning("%s unavailable (%s); retrying in %.1fs, nothing committed", dependency, exc, delay)
                if self._stop.wait(delay):
                    raise Stopped() from None
            else:
                self._outage_over(dependency)
                return result

    def _outage_continues(self, dependency: str, reason: str, since: float | None = None) -> None:
        """`dependency` failed again (since: when the attempt that just failed began, if earlier)."""
        now = time.monotonic()
        with self._outage_lock:
            began = min(self._outages.get(dependency, now), since if since is not None else now)
            self._outages[dependency] = began
            lasted = now - began
            if lasted >= self.settings.unhealthy_after_s:
                self.heartbeat.unhealthy_reason = f"{dependency} unavailable for {lasted:.0f}s: {reason[:300]}"

    def _outage_over(self, dependency: str) -> None:
        with self._outage_lock:
            if self._outages.pop(dependency, None) is not None and not self._outages:
                self.heartbeat.unhealthy_reason = None

    # --- polling thread: publish in order, commit what is acknowledged -------------------------

    def _advance(self) -> bool:
        """Publish finished batches in order and commit those fully acknowledged; True if any moved."""
        if self.producers.failed:
            self._replace_producer()
            return True
        moved = self._redeliver()
        for batch in self._ledger.to_publish():
            if batch.work is not None:
                error = batch.work.exception()
                if error is not None:
                    if not isinstance(error, Stopped):
                        # A bug, not a record or an outage: say so rather than stall silently.
                        log.error("batch failed: %r", error, exc_info=error)
                        self.heartbeat.unhealthy_reason = f"a batch failed unexpectedly: {error!r}"[:300]
                    break  # abandoned: stays uncommitted
                results, refused = batch.work.result()
                for record, rejected in refused:
                    self._dead_letter(batch, record, rejected)
                for record, doc in results:
                    self._publish_result(batch, record, doc)
                batch.results_count = len(results)
                if batch.load:
                    self._deadline.observe((time.perf_counter() - batch.sent) * 1000, batch.load)
            batch.published = True
            moved = True
        self.producer.poll(0)
        settled = self._ledger.settle()
        if isinstance(settled, Rewind):
            self._rewind(settled)
            return True
        if settled:
            self._commit(settled)
            moved = True
        return moved

    def _produce(
        self,
        batch: Batch,
        role: Role,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
        on_content_error: Callable[[str], None] | None = None,
    ) -> None:
        """Produce, counting the delivery against the batch. A delivery the broker refuses for the
        record's content goes to on_content_error(reason) when given; one the cluster fails (a missing
        topic, a denied write, a timeout) waits in the batch and is produced again after a backoff."""
        topic = self.topics.results if role == "results" else self.topics.dead_letter
        self._send(batch, Outgoing(role, topic, key, value, headers, on_content_error, time.monotonic()))

    def _send(self, batch: Batch, out: Outgoing) -> None:
        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            batch.pending_deliveries -= 1
            if batch.abandoned:  # replayed from the source topic: this record's fate no longer matters
                return
            if error is None:
                self._delivered(out.role)
            elif is_fatal(error):
                self.producers.note_error(error)
                batch.delivery_failed = str(error)
            elif out.on_content_error is not None and error.code() in CONTENT_DELIVERY_ERRORS:
                out.on_content_error(str(error))
            else:
                self._undeliverable(batch, out, error)

        while True:
            try:
                self.producer.produce(
                    out.topic,
                    key=out.key,
                    value=out.value,
                    # confluent-kafka asks for list[tuple[str, str | bytes | None]]; list is invariant, ours holds bytes
                    headers=out.headers,  # type: ignore[arg-type]
                    on_delivery=on_delivery,
                )
                batch.pending_deliveries += 1
                return
            except BufferError:  # local queue full: serve callbacks, then try again
                self.producer.poll(0.1)
            except KafkaException as exc:  # refused before sending (size, unknown topic...), or fatal
                if self.producers.note_error(exc):  # the producer is finished, not the record: replay
                    batch.delivery_failed = str(exc)
                    return
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if error is not None and error.code() not in CONTENT_PRODUCE_ERRORS:
                    self._undeliverable(batch, out, error)
                    return
                if out.on_content_error is None:
                    raise
                out.on_content_error(str(error or exc))
                return

    def _undeliverable(self, batch: Batch, out: Outgoing, error: KafkaError) -> None:
        """The cluster did not take a record: keep it in its batch (which cannot commit meanwhile) and
        produce it again once the topic's backoff has passed."""
        batch.undelivered.append(out)
        cause = cause_label(error)
        self.metrics.delivery_failures.labels(out.role, cause).inc()
        variable = "TOPICS_RESULTS" if out.role == "results" else "TOPICS_DEAD_LETTER"
        reason = f"{error.name()}: {delivery_hint(error.code(), out.topic, variable)}"
        self._outage_continues(f"{out.role.replace('_', '-')} topic", reason, since=out.first_sent)
        delay = self._redelivery[out.role].failed(time.monotonic())
        if delay is not None:  # once per round, not once per record
            log.warning(
                "%s topic %s did not take a record (%s); producing what it did not take again in %.1fs, "
                "committing nothing after it",
                out.role.replace("_", "-"),
                out.topic,
                reason,
                delay,
            )

    def _delivered(self, role: Role) -> None:
        self._redelivery[role].delivered()
        self._outage_over(f"{role.replace('_', '-')} topic")

    def _redeliver(self) -> bool:
        """Produce again, in batch order, what a topic did not take once its backoff has passed."""
        now = time.monotonic()
        due = {role for role, redelivery in self._redelivery.items() if redelivery.take_due(now)}
        if not due:
            return False
        moved = False
        for batch in self._ledger:
            waiting = [out for out in batch.undelivered if out.role in due]
            if not waiting:
                continue
            batch.undelivered = [out for out in batch.undelivered if out.role not in due]
            for out in waiting:
                self._send(batch, out)
            moved = True
        return moved

    def _publish_result(self, batch: Batch, record: Message, doc: dict[str, Any]) -> None:
        def refused(reason: str) -> None:
            batch.results_count -= 1
            self._dead_letter(
                batch, record, Rejected(f"the results topic refused the result: {reason}", "publish", "result_refused")
            )

        self._produce(batch, "results", doc["stream_id"].encode(), encode_result(doc), on_content_error=refused)

    def _dead_letter(self, batch: Batch, record: Message, rejected: Rejected) -> None:
        """The original record with why it failed. Its value is left out (its length noted) with
        CONSUMER_DEAD_LETTER_PAYLOAD=headers, or when too large to fit beside the error headers, rather
        than blocking the partition."""
        value = record.value() or b""
        topic, partition, offset = record_origin(record)

        def with_error(original: list[tuple[str, bytes | None]] | None) -> list[tuple[str, bytes]]:
            return dead_letter_headers(original, rejected.reason, rejected.stage, topic, partition, offset,
                                       rejected.code, rejected.attempts)  # fmt: skip

        headers = with_error(record_headers(record))
        size = len(value) + len(record.key() or b"") + sum(len(k) + len(v) for k, v in headers)
        if self.settings.dead_letter_payload == "headers" or size > MAX_MESSAGE_BYTES - _DEAD_LETTER_MARGIN:
            headers.append((Header.ERROR_VALUE_DROPPED, str(len(value)).encode()))
            value = b""

        def without_original(reason: str) -> None:
            # Even the headers do not fit: keep only why, where, and the key.
            minimal = with_error([]) + [(Header.ERROR_VALUE_DROPPED, str(len(record.value() or b"")).encode())]
            self._produce(batch, "dead_letter", (record.key() or b"")[:1024], b"", minimal)

        self._produce(batch, "dead_letter", record.key(), value, headers, on_content_error=without_original)
        self.counts.dead_lettered += 1
        self.metrics.dead_lettered.labels(rejected.stage, rejected.code).inc()
        log.warning(
            "dead-lettered %s[%d]@%d (%s, %s): %s",
            record.topic(),
            record.partition(),
            record.offset(),
            rejected.stage,
            rejected.code,
            rejected.reason,
        )

    def _commit(self, batches: list[Batch]) -> None:
        for batch in batches:
            self.counts.processed += batch.results_count
            self.metrics.processed.inc(batch.results_count)
            self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        offsets = self._ledger.commit_offsets(batches)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance took the partition: its new owner reprocesses (duplicates, no loss).
            log.warning("commit failed (%s); those records will be redelivered", exc)

    def _replace_producer(self) -> None:
        """A fatal producer error: abandon every uncommitted batch (their results may or may not be
        on the broker: at least once), start a new producer and replay from the oldest of them."""
        reason = self.producers.failed
        log.error("producer failed fatally (%s); replacing it and replaying uncommitted batches", reason)
        self.metrics.producer_restarts.inc()
        self._rewind(self._ledger.abandon(reason or "producer failed"))
        self.producers.replace()  # the failed one's messages belong to the abandoned batches

    def _rewind(self, rewind: Rewind) -> None:
        """A producer failed fatally: seek back to the oldest abandoned batch; everything after it comes again."""
        log.error("delivery failed (%s); replaying from the failed batch", rewind.reason)
        self._carry = []
        for (topic, partition), offset in rewind.offsets.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))
