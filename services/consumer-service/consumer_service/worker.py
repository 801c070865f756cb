"""The consumer loop: poll a batch, triage, infer, publish, archive, and only then commit.

At-least-once: an offset is committed only after its frame's result is on the results topic
(or the record is on the dead-letter topic) and archived. Anything interrupted is redelivered.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram

from vidpipe.contract import dead_letter_headers, encode_result
from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings, consumer_config, producer_config
from vidpipe.topics import TopicSettings

from .archive import Archiver
from .inference_client import BatchAnswer, BatchRefused, InferenceClient, InferenceUnavailable
from .settings import ConsumerSettings
from .triage import Accepted, Rejected, Stale, result_document, triage

log = logging.getLogger(__name__)


class Stopped(Exception):
    """Shutdown was requested while waiting; the batch is abandoned uncommitted."""


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.processed = Counter("consumer_frames_processed", "Frames with a stored result", registry=registry)
        self.dead_lettered = Counter("consumer_frames_dead_lettered", "Records sent to the dead-letter topic", ["stage"], registry=registry)
        self.stale = Counter("consumer_frames_stale", "Frames skipped for exceeding the max frame age", registry=registry)
        self.retries = Counter("consumer_retries", "Waits on an unavailable dependency", ["dependency"], registry=registry)
        self.batch_seconds = Histogram("consumer_batch_seconds", "Poll-to-commit time per batch",
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=registry)


@dataclass
class Counts:
    processed: int = 0
    dead_lettered: int = 0
    stale: int = 0
    batches: int = 0
    delivery_failures: list[str] = field(default_factory=list)


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
        self._carry: list[Message] = []  # records polled while waiting out a retry
        self._assigned: set[tuple[str, int]] = set()
        self.consumer = Consumer(consumer_config(kafka, settings.group_id, **{"client.id": "vidpipe-consumer"}))
        self.producer = Producer(producer_config(kafka, **{"client.id": "vidpipe-consumer"}))

    # --- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        self.consumer.subscribe([self.topics.frames], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.close()

    def run_once(self) -> int:
        """Poll one batch and process it; returns how many records were handled."""
        records = self._carry + self.consumer.consume(
            num_messages=max(1, self.settings.batch_max_frames - len(self._carry)),
            timeout=self.settings.batch_max_wait_ms / 1000.0,
        )
        self._carry = []
        self.heartbeat.beat()
        records = [r for r in records if self._usable(r)]
        if records:
            try:
                self.process(records)
            except Stopped:
                log.info("stopping: %d records left uncommitted for redelivery", len(records))
        return len(records)

    def close(self) -> None:
        self.heartbeat.ready = False
        try:
            self.producer.flush(30)
        finally:
            self.consumer.close()  # leaves the group so partitions move at once
            self.client.close()
            self.archiver.close()

    # --- rebalance callbacks ------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        self.heartbeat.ready = True
        log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Every finished batch is committed before the next poll, so nothing processed is
        # pending here; records of an unfinished batch on these partitions will be redelivered.
        self._assigned.difference_update((p.topic, p.partition) for p in partitions)
        self._carry = [r for r in self._carry if (r.topic(), r.partition()) in self._assigned]
        log.info("revoked %s", sorted(p.partition for p in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._on_revoke(consumer, partitions)

    # --- one batch ------------------------------------------------------------------------------

    def _usable(self, record: Message) -> bool:
        error = record.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consume error: %s", error)
        return False

    def process(self, records: list[Message]) -> None:
        started = time.perf_counter()
        now_us = time.time_ns() // 1000
        accepted: list[tuple[Message, Accepted]] = []
        for record in records:
            verdict = triage(record.value(), record.headers(), self.settings.max_frame_bytes,
                             self.settings.max_frame_age_ms, now_us)
            if isinstance(verdict, Accepted):
                accepted.append((record, verdict))
            elif isinstance(verdict, Rejected):
                self._dead_letter(record, verdict.reason, verdict.stage)
            elif isinstance(verdict, Stale):
                self.counts.stale += 1
                self.metrics.stale.inc()

        results: list[dict] = []
        archived: list[tuple] = []
        if accepted:
            answer = self._infer_with_retry([a.value for _, a in accepted])
            processed_us = time.time_ns() // 1000
            for (record, frame), item in zip(accepted, answer.items):
                if "error" in item:
                    self._dead_letter(record, f"inference refused the image: {item['error'].get('message')}", "inference")
                    continue
                doc = result_document(frame.meta, item, answer.model_name, answer.model_version, processed_us)
                self.producer.produce(self.topics.results, key=frame.meta.key, value=encode_result(doc),
                                      on_delivery=self._on_delivery)
                results.append(doc)
                archived.append((frame.meta, frame.value))

        self._retry_until_done("storage", lambda: self.archiver.store(archived, results))
        self._flush()
        if self.counts.delivery_failures:
            failures, self.counts.delivery_failures = self.counts.delivery_failures, []
            log.error("%d deliveries failed (%s); reprocessing the batch", len(failures), failures[0])
            self._rewind(records)
            return
        self._commit(records)
        self.counts.processed += len(results)
        self.counts.batches += 1
        self.metrics.processed.inc(len(results))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _dead_letter(self, record: Message, reason: str, stage: str) -> None:
        headers = dead_letter_headers(record.headers(), reason, stage, record.topic(), record.partition(), record.offset())
        self.producer.produce(self.topics.dead_letter, key=record.key(), value=record.value() or b"", headers=headers,
                              on_delivery=self._on_delivery)
        self.counts.dead_lettered += 1
        self.metrics.dead_lettered.labels(stage).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", record.topic(), record.partition(), record.offset(), reason)

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
        """Retry with jittered exponential backoff, keeping group membership alive while waiting."""
        delay = self.settings.retry_initial_s
        while True:
            try:
                return action()
            except retry_on as exc:
                if self._stop.is_set():
                    raise Stopped() from None
                self.metrics.retries.labels(dependency).inc()
                log.warning("%s unavailable (%s); retrying in %.1fs, nothing committed", dependency, exc, delay)
                self._wait_polling(delay)
                delay = min(delay * 2, self.settings.retry_max_s)

    def _wait_polling(self, seconds: float) -> None:
        """Sleep while still calling poll(), so the broker does not evict us from the group."""
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)
        deadline = time.monotonic() + seconds * random.uniform(0.8, 1.2)
        try:
            while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
                record = self.consumer.poll(min(left, 0.5))
                self.heartbeat.beat()
                if record is not None and self._usable(record):
                    self._carry.append(record)
        finally:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.resume(assignment)

    def _on_delivery(self, error, message) -> None:
        if error is not None:
            self.counts.delivery_failures.append(f"{message.topic()}: {error}")

    def _flush(self) -> None:
        while self.producer.flush(5.0) > 0:
            if self._stop.is_set():
                raise Stopped()
            log.warning("still waiting for %d deliveries", len(self.producer))
            self.heartbeat.beat()

    def _next_offsets(self, records: list[Message]) -> dict[tuple[str, int], int]:
        offsets: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic(), record.partition())
            offsets[key] = max(offsets.get(key, -1), record.offset() + 1)
        return offsets

    def _commit(self, records: list[Message]) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._next_offsets(records).items() if (t, p) in self._assigned]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance took the partition: its new owner reprocesses (duplicates, no loss).
            log.warning("commit failed (%s); records will be redelivered", exc)

    def _rewind(self, records: list[Message]) -> None:
        firsts: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic(), record.partition())
            firsts[key] = min(firsts.get(key, record.offset()), record.offset())
        for (topic, partition), offset in firsts.items():
            if (topic, partition) in self._assigned:
                self.consumer.seek(TopicPartition(topic, partition, offset))
