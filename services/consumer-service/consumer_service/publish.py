"""A batch's results and dead letters on their topics, each counted against its batch until the broker
acknowledges it (the batch commits only then).

- A delivery the broker refuses for the record's content goes to the record's fallback: a result becomes
  a dead letter, a dead letter too large even for its headers keeps only why, where and the key.
- A delivery the cluster fails (a missing topic, a denied write, a timeout) stays with its batch and is
  produced again as it was after a jittered exponential backoff, until it is delivered: its frame is not
  inferred or archived again, and nothing after it is committed meanwhile (delivery.py says which is which).
- A producer that failed fatally marks the batch for a replay from its source records (worker.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from vidpipe import tracing
from vidpipe.contract import MAX_MESSAGE_BYTES, Header, dead_letter_headers, encode_result
from vidpipe.kafka import is_fatal
from vidpipe.member import GroupMember, record_headers, record_origin
from vidpipe.topics import TopicSettings

from .delivery import CONTENT_DELIVERY_ERRORS, CONTENT_PRODUCE_ERRORS, Redelivery, cause_label, delivery_hint
from .ledger import Batch
from .metrics import ConsumerMetrics, Counts
from .outages import Outages
from .settings import ConsumerSettings
from .triage import Rejected

log = logging.getLogger(__name__)

# Room kept for the dead-letter headers and Kafka's record overhead.
_DEAD_LETTER_MARGIN = 64 * 1024

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
    on_delivered: Callable[[], None] | None = None


class Publisher:
    def __init__(
        self,
        member: GroupMember,
        settings: ConsumerSettings,
        topics: TopicSettings,
        metrics: ConsumerMetrics,
        counts: Counts,
        outages: Outages,
    ):
        self.member, self.settings, self.topics = member, settings, topics
        self.metrics, self.counts, self.outages = metrics, counts, outages
        self.redelivery: dict[Role, Redelivery] = {
            role: Redelivery(settings.retry_initial_s, settings.retry_max_s) for role in ("results", "dead_letter")
        }

    def result(self, batch: Batch, record: Message, doc: dict[str, Any], context: Context | None = None) -> None:
        """context: the trace context of the frame's processing; the result's headers carry its publish span."""

        def refused(reason: str) -> None:
            batch.results_count -= 1
            self.dead_letter(
                batch, record, Rejected(f"the results topic refused the result: {reason}", "publish", "result_refused")
            )

        def delivered() -> None:
            self.metrics.observe_result(doc["stream_id"], doc["capture_ts_us"])

        key = doc["stream_id"].encode()
        topic = self.topics.results
        with tracing.tracer().start_as_current_span(
            f"{topic} publish",
            context=context,
            kind=SpanKind.PRODUCER,
            attributes=tracing.kafka_attributes(topic, "publish", key),
        ):
            headers = tracing.inject_headers([])
            self.produce(
                batch, "results", key, encode_result(doc), headers or None, on_content_error=refused,
                on_delivered=delivered,
            )  # fmt: skip

    def dead_letter(self, batch: Batch, record: Message, rejected: Rejected) -> None:
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
            self.produce(batch, "dead_letter", (record.key() or b"")[:1024], b"", minimal)

        self.produce(batch, "dead_letter", record.key(), value, headers, on_content_error=without_original)
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

    def produce(
        self,
        batch: Batch,
        role: Role,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
        on_content_error: Callable[[str], None] | None = None,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        """Produce, counting the delivery against the batch. A delivery the broker refuses for the
        record's content goes to on_content_error(reason) when given; one the cluster fails (a missing
        topic, a denied write, a timeout) waits in the batch and is produced again after a backoff."""
        topic = self.topics.results if role == "results" else self.topics.dead_letter
        self.send(batch, Outgoing(role, topic, key, value, headers, on_content_error, time.monotonic(), on_delivered))

    def send(self, batch: Batch, out: Outgoing) -> None:
        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            batch.pending_deliveries -= 1
            if batch.abandoned:  # replayed from the source topic: this record's fate no longer matters
                return
            if error is None:
                self._delivered(out.role)
                if out.on_delivered is not None:
                    out.on_delivered()
            elif is_fatal(error):
                self.member.producers.note_error(error)
                batch.delivery_failed = str(error)
            elif out.on_content_error is not None and error.code() in CONTENT_DELIVERY_ERRORS:
                out.on_content_error(str(error))
            else:
                self._undeliverable(batch, out, error)

        try:
            if self.member.produce(out.topic, out.value, out.key, out.headers, on_delivery):
                batch.pending_deliveries += 1
            else:  # the producer is finished, not the record: replay
                batch.delivery_failed = self.member.producers.failed or "producer failed"
        except KafkaException as exc:  # refused before sending (size, unknown topic...)
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.code() not in CONTENT_PRODUCE_ERRORS:
                self._undeliverable(batch, out, error)
                return
            if out.on_content_error is None:
                raise
            out.on_content_error(str(error or exc))

    def redeliver(self, batches: Iterable[Batch]) -> bool:
        """Produce again, in batch order, what a topic did not take once its backoff has passed."""
        now = time.monotonic()
        due = {role for role, redelivery in self.redelivery.items() if redelivery.take_due(now)}
        if not due:
            return False
        moved = False
        for batch in batches:
            waiting = [out for out in batch.undelivered if out.role in due]
            if not waiting:
                continue
            batch.undelivered = [out for out in batch.undelivered if out.role not in due]
            for out in waiting:
                self.send(batch, out)
            moved = True
        return moved

    def _undeliverable(self, batch: Batch, out: Outgoing, error: KafkaError) -> None:
        """The cluster did not take a record: keep it in its batch (which cannot commit meanwhile) and
        produce it again once the topic's backoff has passed."""
        batch.undelivered.append(out)
        cause = cause_label(error)
        self.metrics.delivery_failures.labels(out.role, cause).inc()
        variable = "TOPICS_RESULTS" if out.role == "results" else "TOPICS_DEAD_LETTER"
        reason = f"{error.name()}: {delivery_hint(error.code(), out.topic, variable)}"
        self.outages.continues(f"{out.role.replace('_', '-')} topic", reason, since=out.first_sent)
        delay = self.redelivery[out.role].failed(time.monotonic())
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
        self.redelivery[role].delivered()
        self.outages.over(f"{role.replace('_', '-')} topic")
