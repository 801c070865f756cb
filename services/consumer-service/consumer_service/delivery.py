"""Delivery of results and dead letters: which failures are the record's (its content: it can never be
delivered as it is) and which are the cluster's (a missing topic, a denied write, a timeout: the same
record goes through once that is fixed), and how long to wait before producing again. Pure: unit-tested
without a broker.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from confluent_kafka import KafkaError

from vidpipe.backoff import backoff_delay

# Delivery errors that are about the record, not the cluster: retrying the same bytes cannot succeed.
CONTENT_DELIVERY_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
    }
)
# produce() itself refuses a record too large for the producer's message.max.bytes, or with arguments it
# cannot take; what else it raises (an unknown topic or partition) is the cluster's.
CONTENT_PRODUCE_ERRORS = CONTENT_DELIVERY_ERRORS | {KafkaError._INVALID_ARG}

_MISSING = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
_DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
_TIMED_OUT = {KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT}


def cause_label(error: KafkaError) -> str:
    """The metric's label for a failed delivery: librdkafka's error name, e.g. unknown_topic_or_part,
    topic_authorization_failed, msg_timed_out (a bounded set)."""
    return error.name().lstrip("_").lower() or "unknown"


def delivery_hint(code: int, topic: str, variable: str) -> str:
    """The likely fix for a failed delivery, for the log and /healthz."""
    if code in _MISSING:
        return f"does topic {topic} ({variable}) exist? TOPICS_CREATE=true creates missing topics at start-up"
    if code in _DENIED:
        return f"this consumer may not write to {topic} ({variable}): check its IAM policy or the topic's ACLs"
    if code in _TIMED_OUT:
        return f"the brokers did not acknowledge writes to {topic} in time"
    return f"writes to {topic} ({variable}) fail"


class Redelivery:
    """When to produce again what one topic did not take: the first failure after a delivery waits about
    initial_s, each further round twice as long, up to max_s. Failures reported together (a batch's
    records, several batches timing out at once) make one round, not one wait each."""

    def __init__(
        self, initial_s: float, max_s: float, jitter: Callable[[float, float], float] = random.uniform
    ) -> None:
        self.initial_s, self.max_s, self.jitter = initial_s, max_s, jitter
        self.rounds = 0  # failed rounds since the last delivery
        self.due_at: float | None = None

    def failed(self, now: float) -> float | None:
        """A delivery failed: the wait until the next round, when this failure starts one (else None:
        it joins the round already scheduled)."""
        if self.due_at is not None:
            return None
        self.rounds += 1
        delay = backoff_delay(self.rounds, self.initial_s, self.max_s, self.jitter)
        self.due_at = now + delay
        return delay

    def take_due(self, now: float) -> bool:
        """Whether a round is due now (it is then taken: the caller produces the waiting records)."""
        if self.due_at is None or now < self.due_at:
            return False
        self.due_at = None
        return True

    def delivered(self) -> None:
        self.rounds = 0
