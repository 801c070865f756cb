"""A Kafka consumer-group member that produces what it makes of its records: the plumbing every such
service shares, so that each keeps only what it does with a batch.

- Rebalances: the partitions this member may commit (`assigned`) follow the assign, revoke and lost
  callbacks; a subclass finishes work on revoked partitions (on_revoking) and forgets their state
  (on_released). Records held back while paused (`carry`) are dropped with their partition.
- Pause and resume of every assigned partition: a member that cannot take more records keeps polling
  (hold, wait(paused=True)), so the group never evicts it, without taking records in.
- Offsets are committed synchronously, in the order the caller settles them, and only for partitions
  still assigned here: a revoked partition's records are replayed by its next owner (at least once).
- Produce with back-pressure: a full local queue serves delivery reports and tries again, until the
  shutdown grace period is over (Stopped). A producer that fails fatally (librdkafka's idempotent
  producer can, after broker restarts) is noted and replaced; the subclass decides what its messages mean.
- The stop flag and its grace period, the run loop, backoff waits, and consumer lag per partition.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from .backoff import Backoff, backoff_delay
from .health import Heartbeat
from .kafka import ReplaceableProducer

TopicPart = tuple[str, int]
Headers = list[tuple[str, bytes]]
DeliveryCallback = Callable[[KafkaError | None, Message], None]

_log = logging.getLogger(__name__)


class Stopped(Exception):
    """Shutdown came while waiting (on a dependency, a delivery, room in the producer's queue): what is
    not committed stays so, and is redelivered."""


def record_headers(record: Message) -> list[tuple[str, bytes | None]] | None:
    """A consumed record's headers as the contract reads them. confluent-kafka types Message.headers()
    for producing too (a dict, or str values); a consumed record's are a list of (name, bytes | None)."""
    headers = record.headers()
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in items]


def record_origin(record: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record; only error events (dropped by usable) lack them."""
    topic, partition, offset = record.topic(), record.partition(), record.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"record without a source position: {topic}[{partition}]@{offset}")
    return topic, partition, offset


def _parts(partitions: Iterable[TopicPartition]) -> set[TopicPart]:
    return {(p.topic, p.partition) for p in partitions}


class GroupMember(ABC):
    """Subclasses implement run_once (one round of polling and work) and may override close and the
    rebalance hooks. The consumer and the producer are read from their attributes at each use, so they
    can be replaced (a test's fakes, a producer replaced after a fatal error)."""

    stopped_note = "stopping with undelivered work: it stays uncommitted for redelivery"

    def __init__(
        self,
        consumer: Consumer,
        producers: ReplaceableProducer,
        topics: Sequence[str],
        heartbeat: Heartbeat,
        *,
        retry_initial_s: float,
        retry_max_s: float,
        shutdown_timeout_s: float,
        log: logging.Logger = _log,
    ) -> None:
        self.consumer = consumer
        self.producers = producers
        self.topics_consumed = list(topics)
        self.heartbeat = heartbeat
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.log = log  # the service's logger: its lines keep their name
        # Partitions this member owns. Updated in place, never rebound: a subclass may share the set
        # (the consumer's ledger filters its commits and rewinds with it).
        self.assigned: set[TopicPart] = set()
        self.carry: list[Message] = []  # records polled while paused, taken first by take()
        self.paused = False
        self.stop_deadline: float | None = None  # when shutdown's grace period ends
        self._stop = threading.Event()
        self._lag_at = -float("inf")

    @property
    def producer(self) -> Producer:
        return self.producers.current

    # --- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run loop to end; waits give up once shutdown_timeout_s has passed (Stopped)."""
        if not self._stop.is_set():
            self.stop_deadline = time.monotonic() + self.shutdown_timeout_s
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        self.consumer.subscribe(
            self.topics_consumed, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            while not self._stop.is_set():
                self.run_once()
        except Stopped:
            self.log.info(self.stopped_note)
        finally:
            self.close()

    @abstractmethod
    def run_once(self) -> None:
        """One round: poll, work, commit what is done."""

    def close(self) -> None:
        self.leave(self.grace_left())

    def leave(self, flush_timeout_s: float) -> None:
        """Not ready any more; deliver what the producer holds (for up to flush_timeout_s), leave the group."""
        self.heartbeat.ready = False
        try:
            self.producer.flush(flush_timeout_s)
        finally:
            self.consumer.close()  # leaves the group: the partitions move at once

    def grace_left(self) -> float:
        """Seconds left of shutdown's grace period (0 when not stopping)."""
        return max(0.0, (self.stop_deadline or time.monotonic()) - time.monotonic())

    # --- rebalance callbacks (run within consume/poll, on the polling thread) -----------------
    # The hooks do nothing unless the worker keeps something per partition.

    def on_assigned(self, parts: set[TopicPart]) -> None:
        """Partitions just assigned (already in `assigned`)."""
        return None

    def on_revoking(self, parts: set[TopicPart]) -> None:
        """Partitions about to be revoked, still in `assigned`: a moment to finish and commit their work."""
        return None

    def on_released(self, parts: set[TopicPart]) -> None:
        """Partitions revoked or lost (no longer in `assigned`): forget what was kept for them."""
        return None

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = _parts(partitions)
        self.assigned |= parts
        if self.paused and partitions:
            consumer.pause(partitions)  # joined while paused: these wait too
        self.on_assigned(parts)
        self.heartbeat.ready = True
        self.log.info("assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = _parts(partitions)
        self.on_revoking(parts)
        self._release(parts)
        self.log.info("revoked %s", sorted(p.partition for p in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(_parts(partitions))  # nothing of these can be committed any more
        self.log.warning("lost %s", sorted(p.partition for p in partitions))

    def _release(self, parts: set[TopicPart]) -> None:
        self.assigned -= parts
        self.carry = [r for r in self.carry if (r.topic(), r.partition()) not in parts]
        self.on_released(parts)

    # --- consuming ----------------------------------------------------------------------------

    def usable(self, record: Message) -> bool:
        """A record, not an error event; errors other than reaching a partition's end are logged."""
        error = record.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            self.log.warning("consume error: %s", error)
        return False

    def take(self, max_records: int, timeout_s: float) -> list[Message]:
        """Records held back while paused, then new ones, up to max_records (at least one is asked for)."""
        want = max(1, max_records - len(self.carry))
        fresh = self.consumer.consume(num_messages=want, timeout=timeout_s)
        # Read after consume: its rebalance callbacks drop what a revoked partition held back.
        records, self.carry = self.carry + fresh, []
        return [r for r in records if self.usable(r)]

    def set_paused(self, paused: bool) -> None:
        """Pause (or resume) every assigned partition; polling goes on, so the group keeps this member."""
        if paused == self.paused:
            return
        assignment = self.consumer.assignment()
        if assignment:
            (self.consumer.pause if paused else self.consumer.resume)(assignment)
        self.paused = paused

    def poll_paused(self, timeout_s: float) -> None:
        """Pause, then poll the consumer once (group membership); a record it still brings is held back."""
        self.set_paused(True)
        record = self.consumer.poll(timeout_s)
        if record is not None and self.usable(record):
            self.carry.append(record)

    def commit(self, offsets: Mapping[TopicPart, int], redelivered: str = "those records will be redelivered") -> None:
        """Commit these next offsets now (synchronously, so commits land in the order they are made), for
        partitions still assigned; a partition revoked meanwhile is left to its new owner, which replays it."""
        owned = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self.assigned]
        if not owned:
            return
        try:
            self.consumer.commit(offsets=owned, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance took the partition: its new owner reprocesses (duplicates, no loss).
            self.log.warning("commit failed (%s); %s", exc, redelivered)

    def seek(self, offsets: Mapping[TopicPart, int]) -> None:
        """Consume these partitions again from these offsets; what was held back comes again with them."""
        self.carry = []
        for (topic, partition), offset in offsets.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def observe_lag(
        self, report: Callable[[dict[int, int]], None], every_s: float = 5.0, broker_timeout_s: float = 1.0
    ) -> None:
        """Records not yet consumed per owned partition, reported at most every every_s: from the high
        watermarks fetches bring (cheap) or, while paused, asked of the broker (see _high_watermark)."""
        now = time.monotonic()
        if now - self._lag_at < every_s:
            return
        self._lag_at = now
        parts = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
        if not parts:
            return
        deadline = now + broker_timeout_s
        try:
            lags: dict[int, int] = {}
            for tp in self.consumer.position(parts):
                high = self._high_watermark(tp, deadline)
                if tp.offset >= 0 and high >= 0:
                    lags[tp.partition] = max(0, high - tp.offset)
            report(lags)
        except KafkaException as exc:
            self.log.debug("lag unavailable: %s", exc)

    def _high_watermark(self, tp: TopicPartition, deadline: float) -> int:
        """A paused partition is not fetched, so its cached watermark stops where the pause found it and
        the lag would look flat during an outage, when it matters most: ask the broker then, within the
        round's deadline (the polling thread waits meanwhile), falling back to the cached value."""
        left = deadline - time.monotonic()
        if self.paused and left > 0:
            try:
                return self.consumer.get_watermark_offsets(tp, timeout=left, cached=False)[1]
            except KafkaException as exc:
                self.log.debug("high watermark of %s[%d] unavailable: %s", tp.topic, tp.partition, exc)
        return self.consumer.get_watermark_offsets(tp, cached=True)[1]

    # --- producing ----------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> bool:
        """True once the producer holds the record (on_delivery says how it went). A full local queue
        serves delivery reports and tries again, until shutdown's grace period is over (Stopped). False
        when the producer failed fatally (noted: replace_producer makes a new one). Any other refusal
        before sending (size, unknown topic...) raises its KafkaException."""
        while True:
            try:
                # confluent-kafka asks for list[tuple[str, str | bytes | None]]; list is invariant, ours holds bytes
                self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)  # type: ignore[arg-type]
                return True
            except BufferError:
                self.wait(0.1)
            except KafkaException as exc:
                if self.producers.note_error(exc):  # the producer is finished, not the record
                    return False
                raise

    def replace_producer(self, before: Callable[[str], None] | None = None, note: str = "") -> str:
        """A new producer for the one that failed fatally; returns why it failed. before(reason) runs first,
        while the failed producer's delivery reports have not run: it can mark what they no longer decide.
        Those reports run during the replacement, with purge errors."""
        reason = self.producers.failed or "producer failed"
        self.log.error("producer failed fatally (%s); replacing it%s", reason, note)
        if before is not None:
            before(reason)
        self.producers.replace()
        return reason

    # --- waiting ------------------------------------------------------------------------------

    def check_grace(self) -> None:
        """Stopped once shutdown's grace period is over."""
        if self.stop_deadline is not None and time.monotonic() > self.stop_deadline:
            raise Stopped()

    def wait(self, timeout_s: float, paused: bool = False) -> None:
        """On the polling thread: serve delivery reports; paused, poll the paused consumer too, so the group
        keeps this member. Stopped once shutdown's grace period is over."""
        self.check_grace()
        if paused:
            self.producer.poll(0)
            self.poll_paused(timeout_s)
        else:
            self.producer.poll(timeout_s)
        self.heartbeat.beat()

    def hold(self, delay_s: float) -> None:
        """On the polling thread: a backoff wait that keeps the group membership (paused)."""
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline:
            self.wait(min(0.1, max(0.0, deadline - time.monotonic())), paused=True)

    def sleep(self, delay_s: float) -> None:
        """Off the polling thread: wait delay_s, or raise Stopped as soon as stopping."""
        if self._stop.wait(delay_s):
            raise Stopped()

    def backoff(self) -> Backoff:
        """A retry loop's successive waits (retry_initial_s doubled up to retry_max_s, jittered)."""
        return Backoff(self.retry_initial_s, self.retry_max_s)

    def backoff_delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.retry_initial_s, self.retry_max_s)
