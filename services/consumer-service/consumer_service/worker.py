"""The consumer loop, pipelined: polling, inference and archiving overlap; commits stay in order.

- The polling thread (the caller of run) consumes, triages, dead-letters bad records, hands each
  batch to a bounded pool of workers, publishes finished batches' results in batch order, and
  commits a batch's offsets only once its results and dead letters are acknowledged by the broker.
- Workers run inference and archive frames and results (results.py). Only outages are retried
  (inference or storage unreachable, overloaded, or answering in a way that blames no frame: a wrong
  path, a refused token, a proxy): a record whose content makes a step fail costs one dead letter, never
  a stall (see isolation.py for inference, archive.py for storage, publish.py for the results topic).
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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Consumer, Message
from prometheus_client import CollectorRegistry

from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings, ReplaceableProducer, consumer_config
from vidpipe.member import GroupMember, Stopped, TopicPart, record_headers
from vidpipe.topics import TopicSettings

from .archive import Archiver
from .inference_client import InferenceClient
from .ledger import Batch, Ledger, Rewind
from .metrics import ConsumerMetrics, Counts
from .outages import Outages
from .publish import Publisher
from .results import ResultMaker
from .settings import ConsumerSettings
from .triage import Accepted, Rejected, Stale, triage

log = logging.getLogger(__name__)


class ConsumerWorker(GroupMember):
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
        consumer = Consumer(
            consumer_config(
                kafka,
                settings.group_id,
                **{"client.id": "vidpipe-consumer", "queued.max.messages.kbytes": settings.prefetch_max_kbytes},
            )
        )
        super().__init__(
            consumer,
            ReplaceableProducer(kafka, "vidpipe-consumer"),
            [topics.frames],
            heartbeat or Heartbeat(stale_after_s=120),
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            log=log,
        )
        self.settings = settings
        self.topics = topics
        self.archiver = archiver
        self.client = client
        self.metrics = ConsumerMetrics(registry or CollectorRegistry())
        self.counts = Counts()
        self._ledger = Ledger(self.assigned)  # commits and rewinds only ever touch partitions owned here
        self._full_since: float | None = None
        self._pool = ThreadPoolExecutor(max_workers=settings.max_inflight_batches, thread_name_prefix="batch")
        outages = Outages(self, settings.unhealthy_after_s, self.metrics.retries)
        self._results = ResultMaker(self, settings, client, archiver, self.metrics, self.counts, outages)
        self._publisher = Publisher(self, settings, topics, self.metrics, self.counts, outages)
        self._redelivery = self._publisher.redelivery

    # --- lifecycle --------------------------------------------------------------------------

    def run_once(self) -> None:
        self._advance()
        if len(self._ledger) >= self.settings.max_inflight_batches:
            self._full_since = self._full_since or time.monotonic()
            # Pausing purges librdkafka's pre-fetched records and resuming re-fetches them, a
            # stall per cycle; so a pipeline that is briefly full just waits (heartbeats run in
            # the background), serving delivery reports. Only a long wait (an outage) pauses and
            # keeps polling, so the group never evicts this member for not polling.
            long_wait = time.monotonic() - self._full_since >= self.settings.pause_after_s
            self.wait(0.05 if long_wait else 0.005, paused=long_wait)
        else:
            self._full_since = None
            self.set_paused(False)
            records = self.take(self.settings.batch_max_frames, self.settings.batch_max_wait_ms / 1000)
            if records:
                self._start_batch(records)
            self.producer.poll(0)
        self.heartbeat.beat()
        self.metrics.inflight.set(len(self._ledger))
        self.observe_lag(self.metrics.set_lag)

    def close(self) -> None:
        """Finish batches that can finish, commit them, leave the group."""
        self.stop()  # workers waiting on a dead dependency give up; busy ones finish
        self._drain(lambda: len(self._ledger) > 0 and not self._head_abandoned(), time.monotonic() + self.grace_left())
        if len(self._ledger):
            log.info("leaving %d unfinished batches uncommitted for redelivery", len(self._ledger))
        try:
            self.leave(10)
        finally:
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

    def _drain(self, busy: Callable[[], bool], deadline: float) -> None:
        """Publish and commit what finishes, while busy() and until deadline (monotonic)."""
        try:
            while busy() and time.monotonic() < deadline:
                if not self._advance():
                    self.producer.poll(0.05)
        except Stopped:  # shutdown's grace period is over: what is not committed is replayed
            pass

    def on_revoking(self, parts: set[TopicPart]) -> None:
        # Give batches on these partitions a moment to finish, so their offsets are committed
        # here rather than replayed by the partitions' next owner.
        self._drain(lambda: self._ledger.holds(parts), time.monotonic() + self.settings.revoke_timeout_s)

    def on_released(self, parts: set[TopicPart]) -> None:
        self.metrics.forget_partitions(p for _, p in parts)

    # --- polling thread: triage, then hand off -------------------------------------------------

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
                self._publisher.dead_letter(batch, record, verdict)
            elif isinstance(verdict, Stale):
                self.counts.stale += 1
                self.metrics.stale.inc()
        if batch.accepted:
            batch.work = self._pool.submit(self._results, batch)

    # --- polling thread: publish in order, commit what is acknowledged -------------------------

    def _advance(self) -> bool:
        """Publish finished batches in order and commit those fully acknowledged; True if any moved."""
        if self.producers.failed:
            self._replace_producer()
            return True
        moved = self._publisher.redeliver(self._ledger)
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
                    self._publisher.dead_letter(batch, record, rejected)
                for record, doc, context in results:
                    self._publisher.result(batch, record, doc, context)
                batch.results_count = len(results)
                self._results.observe(batch)
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

    def _commit(self, batches: list[Batch]) -> None:
        for batch in batches:
            self.counts.processed += batch.results_count
            self.metrics.processed.inc(batch.results_count)
            self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        self.commit(self._ledger.commit_offsets(batches))

    def _replace_producer(self) -> None:
        """A fatal producer error: abandon every uncommitted batch (their results may or may not be
        on the broker: at least once), start a new producer and replay from the oldest of them."""
        self.metrics.producer_restarts.inc()
        # Abandoned first: the failed producer's purged messages then change nothing of their batches.
        self.replace_producer(
            lambda reason: self._rewind(self._ledger.abandon(reason)), " and replaying uncommitted batches"
        )

    def _rewind(self, rewind: Rewind) -> None:
        """A producer failed fatally: seek back to the oldest abandoned batch; everything after it comes again."""
        log.error("delivery failed (%s); replaying from the failed batch", rewind.reason)
        self.seek(rewind.offsets)
