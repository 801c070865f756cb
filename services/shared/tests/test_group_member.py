"""The shared Kafka group-member base (vidpipe.member) without a broker: small fakes stand in for the
consumer and the producer, and the tests drive rebalances, pause and resume, commits, back-pressure,
the replacement of a fatally failed producer and stopping."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings, ReplaceableProducer
from vidpipe.member import GroupMember, Stopped, record_headers, record_origin

TOPIC = "source"


class Record:
    """A consumed message, as confluent-kafka's Message answers (error events included)."""

    def __init__(self, partition: int, offset: int, error: KafkaError | None = None, headers: Any = None):
        self._partition, self._offset, self._error, self._headers = partition, offset, error, headers

    def topic(self) -> str | None:
        return None if self._error else TOPIC

    def partition(self) -> int | None:
        return None if self._error else self._partition

    def offset(self) -> int | None:
        return None if self._error else self._offset

    def error(self) -> KafkaError | None:
        return self._error

    def headers(self) -> Any:
        return self._headers


class FakeConsumer:
    def __init__(self) -> None:
        self.assigned: list[TopicPartition] = []
        self.queued: list[Record] = []  # what poll() and consume() hand out, in order
        self.paused: set[tuple[str, int]] = set()
        self.commits: list[list[tuple[str, int, int]]] = []
        self.commit_error: Exception | None = None
        self.consumed_asks: list[int] = []
        self.polls = 0
        self.seeks: list[tuple[str, int, int]] = []
        self.subscribed: dict[str, Any] = {}
        self.closed = False
        self.positions: dict[tuple[str, int], int] = {}
        self.high: dict[tuple[str, int], int] = {}  # the cached watermarks (what fetches brought)
        self.broker_high: dict[tuple[str, int], int] = {}  # what the broker answers when asked
        self.broker_asks: list[tuple[tuple[str, int], float | None]] = []
        self.broker_error: Exception | None = None
        self.on_consume: Callable[[], None] | None = None  # a rebalance callback run within consume

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None) -> None:
        self.subscribed = {"topics": topics, "assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned)

    def pause(self, partitions) -> None:
        self.paused |= {(p.topic, p.partition) for p in partitions}

    def resume(self, partitions) -> None:
        self.paused -= {(p.topic, p.partition) for p in partitions}

    def poll(self, timeout: float = -1) -> Record | None:
        self.polls += 1
        if self.queued:
            return self.queued.pop(0)
        time.sleep(min(timeout, 0.01))
        return None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Record]:
        self.consumed_asks.append(num_messages)
        if self.on_consume is not None:
            self.on_consume()
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken

    def commit(self, offsets, asynchronous: bool = True) -> None:
        assert asynchronous is False, "commits are synchronous: they land in the order they are made"
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append([(o.topic, o.partition, o.offset) for o in offsets])

    def seek(self, partition: TopicPartition) -> None:
        self.seeks.append((partition.topic, partition.partition, partition.offset))

    def position(self, partitions):
        return [
            TopicPartition(p.topic, p.partition, self.positions.get((p.topic, p.partition), -1001)) for p in partitions
        ]

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        key = (partition.topic, partition.partition)
        if cached:
            return 0, self.high.get(key, -1)
        self.broker_asks.append((key, timeout))
        if self.broker_error is not None:
            raise self.broker_error
        return 0, self.broker_high.get(key, -1)

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """Takes records (after `full` BufferErrors, or raising `refuse`); poll() serves delivery reports."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.callbacks: list[Callable] = []
        self.full = 0
        self.refuse: Exception | None = None
        self.polls: list[float] = []
        self.flushed: list[float] = []
        self.purged = False

    def produce(self, topic, key=None, value=None, headers=None, on_delivery=None) -> None:
        if self.refuse is not None:
            raise self.refuse
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": headers})
        self.callbacks.append(on_delivery)

    def poll(self, timeout: float = 0) -> int:
        self.polls.append(timeout)
        return 0

    def purge(self, in_queue=True, in_flight=True, blocking=True) -> None:
        self.purged = True
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback(KafkaError(KafkaError._PURGE_QUEUE), None)

    def flush(self, timeout: float = -1) -> int:
        self.flushed.append(timeout)
        return 0


class FakeProducers(ReplaceableProducer):
    """The real replacement logic, making fakes instead of librdkafka producers."""

    def __init__(self) -> None:
        self.made: list[FakeProducer] = []
        super().__init__(KafkaSettings(bootstrap="127.0.0.1:9"), "test")  # never contacted

    def _make(self) -> Any:
        self.made.append(FakeProducer())
        return self.made[-1]


class Member(GroupMember):
    """A member that records its hooks; each round takes records and commits past them."""

    def __init__(self, shutdown_timeout_s: float = 5.0, rounds: Callable[[Member], None] | None = None):
        super().__init__(
            FakeConsumer(),  # type: ignore[arg-type]
            FakeProducers(),
            [TOPIC],
            Heartbeat(stale_after_s=60),
            retry_initial_s=0.01,
            retry_max_s=0.04,
            shutdown_timeout_s=shutdown_timeout_s,
        )
        self.events: list[tuple[str, set[tuple[str, int]], set[tuple[str, int]]]] = []
        self.rounds = rounds
        self.closed = False

    def on_assigned(self, parts):
        self.events.append(("assigned", parts, set(self.assigned)))

    def on_revoking(self, parts):
        self.events.append(("revoking", parts, set(self.assigned)))

    def on_released(self, parts):
        self.events.append(("released", parts, set(self.assigned)))

    def run_once(self) -> None:
        if self.rounds is not None:
            self.rounds(self)

    def close(self) -> None:
        self.closed = True
        super().close()


def tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p) for p in partitions]


def parts(*partitions: int) -> set[tuple[str, int]]:
    return {(TOPIC, p) for p in partitions}


# --- rebalances -------------------------------------------------------------------------------------


def test_assignment_follows_assign_revoke_and_lost_and_releases_what_was_held_back():
    member = Member()
    consumer = member.consumer
    member._on_assign(consumer, tps(0, 1, 2))
    assert member.assigned == parts(0, 1, 2) and member.heartbeat.ready
    assert member.events == [("assigned", parts(0, 1, 2), parts(0, 1, 2))]
    member.carry = [Record(0, 5), Record(1, 6), Record(2, 7)]

    member._on_revoke(consumer, tps(0))
    assert member.events[1:] == [
        ("revoking", parts(0), parts(0, 1, 2)),  # still owned: its work can still commit
        ("released", parts(0), parts(1, 2)),
    ]
    assert member.assigned == parts(1, 2)
    assert [r.partition() for r in member.carry] == [1, 2], "a revoked partition's held-back records are dropped"

    member._on_lost(consumer, tps(2))
    assert member.events[3:] == [("released", parts(2), parts(1))], "a lost partition has nothing to finish"
    assert member.assigned == parts(1) and [r.partition() for r in member.carry] == [1]


def test_the_assigned_set_is_updated_in_place_so_that_it_can_be_shared():
    member = Member()
    shared = member.assigned
    member._on_assign(member.consumer, tps(0, 1))
    member._on_revoke(member.consumer, tps(1))
    assert shared is member.assigned and shared == parts(0)


def test_partitions_assigned_while_paused_are_paused_too():
    member = Member()
    consumer = member.consumer
    consumer.assigned = tps(0)
    member.set_paused(True)
    member._on_assign(consumer, tps(3))
    assert consumer.paused == parts(0, 3)
    consumer.assigned = tps(0, 3)  # the client adds them to its assignment after the callback
    member.set_paused(False)
    member._on_assign(consumer, tps(4))
    assert consumer.paused == set(), "resumed, a new partition is not paused"


def test_run_subscribes_with_the_rebalance_callbacks():
    member = Member(rounds=lambda m: m.stop())
    member.run()
    subscribed = member.consumer.subscribed
    assert subscribed["topics"] == [TOPIC]
    assert subscribed["assign"] == member._on_assign and subscribed["revoke"] == member._on_revoke
    assert subscribed["lost"] == member._on_lost


# --- consuming, pausing -------------------------------------------------------------------------------


def test_pause_and_resume_cover_every_assigned_partition_once():
    member = Member()
    consumer = member.consumer
    consumer.assigned = tps(0, 1)
    member.set_paused(True)
    assert member.paused and consumer.paused == parts(0, 1)
    consumer.paused.clear()
    member.set_paused(True)
    assert consumer.paused == set(), "already paused: no second pause"
    consumer.paused = parts(0, 1)
    member.set_paused(False)
    assert not member.paused and consumer.paused == set()


def test_a_paused_poll_keeps_what_it_brings_and_take_hands_it_out_first():
    member = Member()
    consumer = member.consumer
    consumer.assigned = tps(0)
    consumer.queued = [Record(0, 10)]
    member.poll_paused(0.01)
    assert member.paused and consumer.polls == 1 and [r.offset() for r in member.carry] == [10]
    consumer.queued = [Record(0, 11), Record(0, 12), Record(0, 13)]
    taken = member.take(3, 0.01)
    assert [r.offset() for r in taken] == [10, 11, 12] and consumer.consumed_asks == [2]
    assert member.carry == []
    assert [r.offset() for r in member.take(1, 0.01)] == [13]
    assert member.take(1, 0.01) == [] and consumer.consumed_asks[-1] == 1, "at least one is asked for"


def test_take_drops_what_a_rebalance_within_consume_revoked():
    member = Member()
    member._on_assign(member.consumer, tps(0, 1))
    member.carry = [Record(0, 1), Record(1, 2)]
    member.consumer.on_consume = lambda: member._on_revoke(member.consumer, tps(0))
    assert [(r.partition(), r.offset()) for r in member.take(5, 0.01)] == [(1, 2)]


def test_error_events_are_not_records_and_only_real_errors_are_logged(caplog):
    member = Member()
    member.consumer.queued = [
        Record(0, 1),
        Record(0, 0, KafkaError(KafkaError._PARTITION_EOF)),
        Record(0, 0, KafkaError(KafkaError._TRANSPORT)),
        Record(0, 2),
    ]
    with caplog.at_level(logging.WARNING):
        assert [r.offset() for r in member.take(10, 0.01)] == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("consume error:")


# --- commits -----------------------------------------------------------------------------------------


def test_commits_are_synchronous_in_order_and_only_for_owned_partitions():
    member = Member()
    consumer = member.consumer
    member._on_assign(consumer, tps(0, 1))
    member.commit({(TOPIC, 0): 5, (TOPIC, 1): 3})
    member.commit({(TOPIC, 0): 9})
    member._on_revoke(consumer, tps(1))
    member.commit({(TOPIC, 0): 12, (TOPIC, 1): 8})  # partition 1 is its new owner's to replay
    member.commit({(TOPIC, 1): 10})  # nothing owned: no commit at all
    assert consumer.commits == [[(TOPIC, 0, 5), (TOPIC, 1, 3)], [(TOPIC, 0, 9)], [(TOPIC, 0, 12)]]


def test_a_failed_commit_is_logged_not_raised(caplog):
    member = Member()
    member._on_assign(member.consumer, tps(0))
    member.consumer.commit_error = KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    with caplog.at_level(logging.WARNING):
        member.commit({(TOPIC, 0): 5}, "those results will be redelivered")
    assert any(
        "commit failed" in r.getMessage() and r.getMessage().endswith("those results will be redelivered")
        for r in caplog.records
    )


def test_seek_rewinds_and_forgets_what_was_held_back():
    member = Member()
    member.carry = [Record(0, 7)]
    member.seek({(TOPIC, 0): 3, (TOPIC, 2): 40})
    assert member.consumer.seeks == [(TOPIC, 0, 3), (TOPIC, 2, 40)] and member.carry == []


def test_lag_is_reported_per_owned_partition_at_most_every_interval():
    member = Member()
    consumer = member.consumer
    member._on_assign(consumer, tps(0, 1, 2))
    consumer.positions = {(TOPIC, 0): 5, (TOPIC, 1): 20}  # partition 2: no position yet
    consumer.high = {(TOPIC, 0): 12, (TOPIC, 1): 20, (TOPIC, 2): 4}
    reports: list[dict[int, int]] = []
    member.observe_lag(reports.append, every_s=60)
    member.observe_lag(reports.append, every_s=60)
    assert reports == [{0: 7, 1: 0}]
    assert consumer.broker_asks == [], "not paused: the cached watermarks, no request to the broker"


def test_paused_the_lag_comes_from_the_brokers_watermarks_which_no_fetch_refreshes_then():
    member = Member()
    consumer = member.consumer
    member._on_assign(consumer, tps(0, 1))
    consumer.positions = {(TOPIC, 0): 5, (TOPIC, 1): 20}
    consumer.high = {(TOPIC, 0): 12, (TOPIC, 1): 20}  # where the pause froze them
    consumer.broker_high = {(TOPIC, 0): 300, (TOPIC, 1): 90}
    member.set_paused(True)
    reports: list[dict[int, int]] = []
    member.observe_lag(reports.append, every_s=0, broker_timeout_s=2.0)
    assert reports == [{0: 295, 1: 70}]
    assert [key for key, _ in consumer.broker_asks] == [(TOPIC, 0), (TOPIC, 1)]
    assert all(0 < timeout <= 2.0 for _, timeout in consumer.broker_asks), "bounded by the round's deadline"

    member.set_paused(False)
    member.observe_lag(reports.append, every_s=0)
    assert reports[-1] == {0: 7, 1: 0} and len(consumer.broker_asks) == 2, "resumed: fetches refresh the cache"


def test_paused_a_broker_that_does_not_answer_leaves_the_cached_watermarks():
    member = Member()
    consumer = member.consumer
    member._on_assign(consumer, tps(0))
    consumer.positions = {(TOPIC, 0): 5}
    consumer.high = {(TOPIC, 0): 12}
    consumer.broker_error = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    member.set_paused(True)
    reports: list[dict[int, int]] = []
    member.observe_lag(reports.append, every_s=0)
    assert reports == [{0: 7}]

    consumer.broker_error = None
    consumer.broker_asks.clear()
    member.observe_lag(reports.append, every_s=0, broker_timeout_s=0)
    assert reports[-1] == {0: 7} and consumer.broker_asks == [], "no time left in the round: no request"


# --- producing ---------------------------------------------------------------------------------------


def test_a_full_queue_serves_delivery_reports_and_tries_again():
    member = Member()
    producer = member.producer
    producer.full = 3
    reports = []
    assert member.produce("out", b"v", key=b"k", on_delivery=lambda e, m: reports.append(e))
    assert len(producer.polls) == 3 and all(t > 0 for t in producer.polls), "waited for room, three times"
    assert producer.sent == [{"topic": "out", "key": b"k", "value": b"v", "headers": None}]
    producer.callbacks[0](None, None)
    assert reports == [None]


def test_a_full_queue_gives_up_once_the_grace_period_is_over():
    member = Member(shutdown_timeout_s=0.05)
    member.producer.full = 10**9
    member.stop()
    started = time.monotonic()
    with pytest.raises(Stopped):
        member.produce("out", b"v")
    assert time.monotonic() - started < 2
    assert member.producer.sent == []


def test_a_refusal_before_sending_is_the_callers_to_handle():
    member = Member()
    member.producer.refuse = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    with pytest.raises(KafkaException):
        member.produce("out", b"v")
    assert member.producers.failed is None, "not fatal: the producer goes on"


def test_a_fatally_failed_producer_is_noted_then_replaced_after_the_caller_marked_its_messages():
    member = Member()
    producers = member.producers
    failed = member.producer
    reports: list[KafkaError | None] = []
    assert member.produce("out", b"first", on_delivery=lambda e, m: reports.append(e))
    failed.refuse = KafkaException(KafkaError(KafkaError._FATAL, "sequence desync"))
    assert member.produce("out", b"second") is False, "the producer is finished, not the record"
    assert producers.failed and "sequence desync" in producers.failed

    seen = []

    def before(reason: str) -> None:
        seen.append((reason, member.producer is failed, list(reports)))

    reason = member.replace_producer(before)
    assert seen == [(reason, True, [])], "before() runs while the failed producer's reports are still pending"
    assert "sequence desync" in reason
    assert failed.purged and [e.code() for e in reports] == [KafkaError._PURGE_QUEUE]
    assert member.producer is producers.made[-1] and member.producer is not failed
    assert producers.failed is None
    assert member.produce("out", b"second") and member.producer.sent[0]["value"] == b"second"


def test_a_fatal_error_reported_by_the_client_is_replaced_the_same_way():
    member = Member()
    member.producers.note_error(KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "desync", fatal=True))
    assert member.producers.failed
    member.replace_producer()
    assert len(member.producers.made) == 2 and member.producers.failed is None


# --- stopping, waiting -------------------------------------------------------------------------------


def test_the_run_loop_ends_on_stop_and_leaves_the_group():
    rounds = []

    def round_(member: Member) -> None:
        rounds.append(1)
        if len(rounds) == 3:
            member.stop()

    member = Member(shutdown_timeout_s=5, rounds=round_)
    member.heartbeat.ready = True
    member.run()
    assert len(rounds) == 3 and member.closed and member.consumer.closed
    assert not member.heartbeat.ready
    assert member.producer.flushed and 4 < member.producer.flushed[0] <= 5, "flushes for the grace left"


def test_stopped_in_a_round_ends_the_loop_quietly_and_still_leaves(caplog):
    def round_(member: Member) -> None:
        raise Stopped()

    member = Member(rounds=round_)
    with caplog.at_level(logging.INFO):
        member.run()
    assert member.consumer.closed and member.producer.flushed == [0.0], "not stopping: no grace to flush in"
    assert any(r.getMessage() == Member.stopped_note for r in caplog.records)


def test_a_failure_in_a_round_still_leaves_the_group():
    def round_(member: Member) -> None:
        raise RuntimeError("bug")

    member = Member(rounds=round_)
    with pytest.raises(RuntimeError):
        member.run()
    assert member.consumer.closed


def test_the_grace_period_starts_at_the_first_stop():
    member = Member(shutdown_timeout_s=10)
    assert not member.stopping and member.grace_left() == 0
    member.stop()
    first = member.stop_deadline
    time.sleep(0.01)
    member.stop()
    assert member.stopping and member.stop_deadline == first and 9 < member.grace_left() <= 10


def test_a_backoff_sleep_ends_as_soon_as_stopping():
    member = Member()
    started = time.monotonic()
    member.sleep(0.05)  # not stopping: the whole wait
    assert time.monotonic() - started >= 0.05
    threading.Timer(0.05, member.stop).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        member.sleep(30)
    assert time.monotonic() - started < 5


def test_waiting_serves_delivery_reports_and_paused_keeps_polling_the_group():
    member = Member(shutdown_timeout_s=0.05)
    consumer, producer = member.consumer, member.producer
    consumer.assigned = tps(0)
    member.wait(0.02)
    assert producer.polls == [0.02] and consumer.polls == 0 and not member.paused
    consumer.queued = [Record(0, 4)]
    member.wait(0.02, paused=True)
    assert consumer.polls == 1 and member.paused and [r.offset() for r in member.carry] == [4]
    started = time.monotonic()
    member.hold(0.1)
    assert time.monotonic() - started >= 0.1 and consumer.polls > 2, "a backoff wait that keeps the membership"
    member.stop()
    time.sleep(0.06)
    with pytest.raises(Stopped):
        member.wait(0.01)
    with pytest.raises(Stopped):
        member.hold(1)


def test_backoff_waits_use_the_members_bounds():
    member = Member()
    backoff = member.backoff()
    assert (backoff.initial_s, backoff.max_s) == (0.01, 0.04)
    assert all(0.008 <= member.backoff_delay(n) <= 0.04 for n in range(1, 8))
    assert member.backoff_delay(10) <= 0.04


# --- records ------------------------------------------------------------------------------------------


def test_a_records_headers_and_origin():
    assert record_headers(Record(0, 1, headers=[("a", b"1"), ("b", "2"), ("c", None)])) == [
        ("a", b"1"),
        ("b", b"2"),
        ("c", None),
    ]
    assert record_headers(Record(0, 1)) is None
    assert record_origin(Record(3, 9)) == (TOPIC, 3, 9)
    with pytest.raises(ValueError):
        record_origin(Record(0, 0, KafkaError(KafkaError._TRANSPORT)))
