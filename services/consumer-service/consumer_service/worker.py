"""The consumer loop, pipelined: polling, inference and archiving overlap; commits stay in order.

- The polling thread (the caller of run) consumes, triages, dead-letters bad records, hands each
  batch to a bounded pool of workers, publishes finished batches' results in batch order, and
  commits a batch's offsets only once its results and dead letters are acknowledged by the broker.
- Workers run inference (retrying while it is unavailable) and archive frames and results.
- At most `max_inflight_batches` batches are held, so memory stays bounded when inference is
  slower than the incoming stream; new records stay in Kafka. If the pipeline stays full (an
  outage), the partitions are paused and the polling thread keeps polling, so the group never
  evicts this member.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vidpipe.contract import dead_letter_headers, encode_result
from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings, consumer_config, producer_config
from vidpipe.topics import TopicSettings

from .archive import Archiver
from .deadline import SendDeadline
from .inference_client import BatchAnswer, BatchRefused, InferenceClient, InferenceUnavailable
from .settings import ConsumerSettings
from .triage import Accepted, Rejected, Stale, result_document, triage

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


class Stopped(Exception):
    """Shutdown was requested while waiting on a dependency; the batch stays uncommitted."""


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.processed = Counter("consumer_frames_processed", "Frames with a stored result", registry=registry)
        self.dead_lettered = Counter("consumer_frames_dead_lettered", "Records sent to the dead-letter topic", ["stage"], registry=registry)
        self.stale = Counter("consumer_frames_stale", "Frames skipped for exceeding the max frame age", registry=registry)
        self.retries = Counter("consumer_retries", "Waits on an unavailable dependency", ["dependency"], registry=registry)
        self.inflight = Gauge("consumer_inflight_batches", "Batches polled but not yet committed", registry=registry)
        self.batch_seconds = Histogram("consumer_batch_seconds", "Poll-to-commit time per batch",
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=registry)


@dataclass
class Counts:
    processed: int = 0
    dead_lettered: int = 0
    stale: int = 0
    batches: int = 0


@dataclass(eq=False)
class Batch:
    records: list[Message]
    accepted: list[tuple[Message, Accepted]]
    offsets: dict[TopicPartitionKey, int]  # next offset to commit, per partition
    first_offsets: dict[TopicPartitionKey, int]
    started: float = field(default_factory=time.perf_counter)
    future: Future | None = None  # inference + archive, on a worker
    published: bool = False
    pending_deliveries: int = 0
    delivery_failed: str | None = None
    results_count: int = 0
    sent: float = 0.0  # when its frames went to inference
    load: int = 0  # frames in inference when it was sent, its own included

    def ready(self) -> bool:
        return self.future is None or self.future.done()


def partition_offsets(records: list[Message]) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, int]]:
    nexts: dict[TopicPartitionKey, int] = {}
    firsts: dict[TopicPartitionKey, int] = {}
    for record in records:
        key = (record.topic(), record.partition())
        nexts[key] = max(nexts.get(key, -1), record.offset() + 1)
        firsts[key] = min(firsts.get(key, record.offset()), record.offset())
    return nexts, firsts


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
        self._inflight: deque[Batch] = deque()
        self._carry: list[Message] = []  # records that arrived while the pipeline was full
        self._assigned: set[TopicPartitionKey] = set()
        self._paused = False
        self._full_since: float | None = None
        self._deadline = SendDeadline(settings.max_frame_age_ms)
        self._frames_in_inference = 0
        self._load_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.max_inflight_batches, thread_name_prefix="batch")
        self.consumer = Consumer(consumer_config(kafka, settings.group_id, **{
            "client.id": "vidpipe-consumer",
            "queued.max.messages.kbytes": settings.prefetch_max_kbytes,
        }))
        self.producer = Producer(producer_config(kafka, **{"client.id": "vidpipe-consumer"}))

    # --- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self.consumer.subscribe([self.topics.frames], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.close()

    def run_once(self) -> None:
        self._advance()
        full = len(self._inflight) >= self.settings.max_inflight_batches
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
            records = self._carry + self.consumer.consume(num_messages=want, timeout=self.settings.batch_max_wait_ms / 1000)
            self._carry = []
            records = [r for r in records if self._usable(r)]
            if records:
                self._start_batch(records)
            self.producer.poll(0)
        self.heartbeat.beat()
        self.metrics.inflight.set(len(self._inflight))

    def close(self) -> None:
        """Finish batches that can finish, commit them, leave the group."""
        self._stop.set()  # workers waiting on a dead dependency give up; busy ones finish
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        while self._inflight and time.monotonic() < deadline and not self._head_abandoned():
            if not self._advance():
                self.producer.poll(0.05)
        if self._inflight:
            log.info("leaving %d unfinished batches uncommitted for redelivery", len(self._inflight))
        self.heartbeat.ready = False
        try:
            self.producer.flush(10)
        finally:
            self.consumer.close()  # leaves the group so partitions move at once
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.client.close()
            self.archiver.close()

    def _head_abandoned(self) -> bool:
        """The oldest batch gave up (its dependency stayed down): nothing behind it can commit."""
        head = self._inflight[0] if self._inflight else None
        return bool(head and head.future and head.future.done() and head.future.exception() is not None)

    # --- rebalance callbacks ------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        if self._paused and partitions:
            consumer.pause(partitions)
        self.heartbeat.ready = True
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        # Give batches on these partitions a moment to finish, so their offsets are committed
        # here rather than replayed by the partitions' next owner.
        deadline = time.monotonic() + self.settings.revoke_timeout_s
        while any(revoked & b.offsets.keys() for b in self._inflight) and time.monotonic() < deadline:
            if not self._advance():
                self.producer.poll(0.05)
        self._assigned -= revoked
        self._carry = [r for r in self._carry if (r.topic(), r.partition()) not in revoked]
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in partitions}
        self._assigned -= lost  # nothing of these can be committed any more
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
        nexts, firsts = partition_offsets(records)
        batch = Batch(records, [], nexts, firsts)
        for record in records:
            verdict = triage(record.value(), record.headers(), self.settings.max_frame_bytes,
                             self.settings.max_frame_age_ms, now_us)
            if isinstance(verdict, Accepted):
                batch.accepted.append((record, verdict))
            elif isinstance(verdict, Rejected):
                self._dead_letter(batch, record, verdict.reason, verdict.stage)
            elif isinstance(verdict, Stale):
                self.counts.stale += 1
                self.metrics.stale.inc()
        if batch.accepted:
            batch.future = self._pool.submit(self._infer_and_archive, batch)
        self._inflight.append(batch)

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
        fresh = [item for item, ok in zip(batch.accepted, in_time) if ok]
        skipped = len(batch.accepted) - len(fresh)
        if skipped:
            batch.accepted = fresh
            self.counts.stale += skipped
            self.metrics.stale.inc(skipped)

    def _infer_and_archive(self, batch: Batch) -> tuple[list[dict], list[tuple[Message, str]]]:
        self._drop_stale(batch)
        if not batch.accepted:
            return [], []
        with self._load_lock:
            self._frames_in_inference += len(batch.accepted)
            batch.load = self._frames_in_inference
        batch.sent = time.perf_counter()
        try:
            answer = self._infer_with_retry([frame.value for _, frame in batch.accepted])
        finally:
            with self._load_lock:
                self._frames_in_inference -= len(batch.accepted)
        processed_us = time.time_ns() // 1000
        results: list[dict] = []
        refused: list[tuple[Message, str]] = []
        archived = []
        for (record, frame), item in zip(batch.accepted, answer.items):
            if "error" in item:
                refused.append((record, f"inference refused the image: {item['error'].get('message')}"))
                continue
            results.append(result_document(frame.meta, item, answer.model_name, answer.model_version, processed_us))
            archived.append((frame.meta, frame.value))
        self._retry_until_done("storage", lambda: self.archiver.store(archived, results))
        return results, refused

    def _infer_with_retry(self, images: list[bytes]) -> BatchAnswer:
        def attempt() -> BatchAnswer:
            try:
                return self.client.infer_batch(images)
            except BatchRefused as exc:
                if len(images) == 1:
                    return BatchAnswer("", "", [{"error": {"message": str(exc)}}])
                # Find the item the service refuses by asking one at a time.
                log.warning("batch refused (%s); retrying item by item", exc)
                answers = [self._infer_with_retry([image]) for image in images]
                named = next((a for a in answers if a.model_name), answers[0])
                return BatchAnswer(named.model_name, named.model_version, [a.items[0] for a in answers])

        return self._retry_until_done("inference", attempt, retry_on=(InferenceUnavailable,))

    def _retry_until_done(self, dependency: str, action, retry_on: tuple[type[BaseException], ...] = (Exception,)):
        """Retry with jittered exponential backoff until done or stopping (then Stopped)."""
        delay = self.settings.retry_initial_s
        while True:
            try:
                return action()  # work that can finish does, even while stopping
            except retry_on as exc:
                if self._stop.is_set():
                    raise Stopped() from exc
                self.metrics.retries.labels(dependency).inc()
                log.warning("%s unavailable (%s); retrying in %.1fs, nothing committed", dependency, exc, delay)
                if self._stop.wait(delay * random.uniform(0.8, 1.2)):
                    raise Stopped() from None
                delay = min(delay * 2, self.settings.retry_max_s)

    # --- polling thread: publish in order, commit what is acknowledged -------------------------

    def _advance(self) -> bool:
        """Publish finished batches in order and commit those fully acknowledged; True if any moved."""
        moved = False
        for batch in self._inflight:
            if not batch.ready():
                break
            if not batch.published:
                if batch.future is not None:
                    if batch.future.exception() is not None:
                        if not isinstance(batch.future.exception(), Stopped):
                            log.error("batch failed: %r", batch.future.exception())
                        break  # abandoned: stays uncommitted
                    results, refused = batch.future.result()
                    for record, reason in refused:
                        self._dead_letter(batch, record, reason, "inference")
                    for doc in results:
                        self._produce(batch, self.topics.results, doc["stream_id"].encode(), encode_result(doc))
                    batch.results_count = len(results)
                    if batch.load:
                        self._deadline.observe((time.perf_counter() - batch.sent) * 1000, batch.load)
                batch.published = True
                moved = True
        self.producer.poll(0)
        done: list[Batch] = []
        while self._inflight and self._inflight[0].published and self._inflight[0].pending_deliveries == 0:
            batch = self._inflight.popleft()
            if batch.delivery_failed:
                self._replay_from(batch)
                return True
            done.append(batch)
        if done:
            self._commit(done)
            moved = True
        return moved

    def _produce(self, batch: Batch, topic: str, key: bytes | None, value: bytes, headers=None) -> None:
        def on_delivery(error, _message) -> None:
            batch.pending_deliveries -= 1
            if error is not None:
                batch.delivery_failed = str(error)

        batch.pending_deliveries += 1
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: serve callbacks, then try again
                self.producer.poll(0.1)

    def _dead_letter(self, batch: Batch, record: Message, reason: str, stage: str) -> None:
        headers = dead_letter_headers(record.headers(), reason, stage, record.topic(), record.partition(), record.offset())
        self._produce(batch, self.topics.dead_letter, record.key(), record.value() or b"", headers)
        self.counts.dead_lettered += 1
        self.metrics.dead_lettered.labels(stage).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", record.topic(), record.partition(), record.offset(), reason)

    def _commit(self, batches: list[Batch]) -> None:
        offsets: dict[TopicPartitionKey, int] = {}
        for batch in batches:
            for key, offset in batch.offsets.items():
                offsets[key] = max(offsets.get(key, -1), offset)
            processed = batch.results_count
            self.counts.processed += processed
            self.counts.batches += 1
            self.metrics.processed.inc(processed)
            self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        commit = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self._assigned]
        if not commit:
            return
        try:
            self.consumer.commit(offsets=commit, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance took the partition: its new owner reprocesses (duplicates, no loss).
            log.warning("commit failed (%s); those records will be redelivered", exc)

    def _replay_from(self, failed: Batch) -> None:
        """A delivery failed: rewind to the failed batch and drop everything after it."""
        log.error("delivery failed (%s); replaying from the failed batch", failed.delivery_failed)
        firsts = dict(failed.first_offsets)
        for batch in self._inflight:
            for key, offset in batch.first_offsets.items():
                firsts[key] = min(firsts.get(key, offset), offset)
        self._inflight.clear()
        self._carry = []
        for (topic, partition), offset in firsts.items():
            if (topic, partition) in self._assigned:
                self.consumer.seek(TopicPartition(topic, partition, offset))
