"""Results and dead letters the cluster does not take (a missing topic, a denied write, a timeout): they
wait in their batch and are produced again, as they were, after a growing jittered backoff; nothing is
inferred or archived again, nothing after them is committed, the failures are counted by cause and a long
one makes /healthz unhealthy. Errors about a record's content stay what they were: its dead letter."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from consumer_support import Record, StandIn, advance_until, make_worker, metric

from consumer_service.delivery import Redelivery, cause_label, delivery_hint
from vidpipe.backoff import Backoff, backoff_delay
from vidpipe.contract import Header, header_dict


@pytest.fixture(scope="module")
def server():
    server = StandIn()
    yield server
    server.close()


@pytest.fixture
def stand_in(server):
    return server.reset()


def test_failures_reported_together_make_one_round_and_rounds_back_off_until_a_delivery():
    redelivery = Redelivery(1.0, 8.0, jitter=lambda low, high: 1.0)
    assert redelivery.failed(now=100) == 1.0
    assert redelivery.failed(now=100.1) is None, "joins the scheduled round"
    assert not redelivery.take_due(100.9) and redelivery.take_due(101.0)
    assert not redelivery.take_due(101.0), "a round is taken once"
    delays = []
    for now in (200, 300, 400, 500):
        delays.append(redelivery.failed(now))
        assert redelivery.take_due(now + 50)
    assert delays == [2.0, 4.0, 8.0, 8.0]
    redelivery.delivered()
    assert redelivery.failed(now=1000) == 1.0, "a delivery resets the backoff"


def test_the_backoff_doubles_up_to_its_bound_with_jitter():
    assert [backoff_delay(n, 0.5, 10, lambda lo, hi: 1.0) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert [backoff_delay(n, 0.5, 10, lambda lo, hi: hi) for n in range(3, 7)] == [2.4, 4.8, 9.6, 10], (
        "jitter spreads the waits but never past the configured maximum"
    )
    assert backoff_delay(1, 1, 10, lambda lo, hi: lo) == 0.8 and backoff_delay(1, 1, 10, lambda lo, hi: hi) == 1.2
    loop = Backoff(0.5, 2, lambda lo, hi: 1.0)  # a retry loop's waits: they grow, and start over after a success
    assert [loop.next() for _ in range(4)] == [0.5, 1, 2, 2]
    loop.reset()
    assert loop.next() == 0.5


def test_causes_and_hints_name_the_topic_and_its_setting():
    assert cause_label(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)) == "unknown_topic_or_part"
    assert cause_label(KafkaError(KafkaError._MSG_TIMED_OUT)) == "msg_timed_out"
    assert cause_label(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)) == "topic_authorization_failed"
    assert "does topic r (TOPICS_RESULTS) exist?" in delivery_hint(
        KafkaError.UNKNOWN_TOPIC_OR_PART, "r", "TOPICS_RESULTS"
    )
    assert "may not write to d" in delivery_hint(KafkaError.TOPIC_AUTHORIZATION_FAILED, "d", "TOPICS_DEAD_LETTER")


@pytest.mark.parametrize(
    "code", [KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._MSG_TIMED_OUT]
)
def test_results_the_cluster_did_not_take_are_produced_again_without_inferring_or_archiving_again(
    tmp_path, stand_in, code
):
    worker = make_worker(tmp_path, stand_in.url, unhealthy_after_s=0.2, retry_initial_s=0.3, retry_max_s=0.6)
    producer = worker.producer
    worker._start_batch([Record(0), Record(1)])
    advance_until(worker, lambda: len(producer.sent) == 2)
    archived = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (tmp_path / "archive").rglob("*") if p.is_file()}
    assert len(archived) == 3, "two frames and one results object"
    time.sleep(0.25)  # the topic has been failing longer than CONSUMER_UNHEALTHY_AFTER_S by the time it says so
    assert producer.deliver(KafkaError(code)) == 2

    cause = cause_label(KafkaError(code))
    assert metric(worker, "consumer_delivery_failures_total", topic="results", cause=cause) == 2
    assert not worker.heartbeat.alive and "results topic unavailable" in worker.heartbeat.unhealthy_reason
    for _ in range(10):  # the backoff holds: no tight loop, nothing committed
        worker._advance()
    assert len(producer.sent) == 2 and worker.consumer.commits == []

    advance_until(worker, lambda: len(producer.sent) == 4, timeout_s=3)
    assert [m["value"] for m in producer.sent[2:]] == [m["value"] for m in producer.sent[:2]], "the same results"
    producer.deliver(None)
    advance_until(worker, lambda: worker.consumer.commits)
    assert worker.consumer.commits == [{("frames", 0): 2}]
    assert stand_in.requests == [2], "inference ran once"
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in archived} == archived, "no object rewritten"
    assert len([p for p in (tmp_path / "archive").rglob("*") if p.is_file()]) == 3, "and none added"
    assert worker.heartbeat.alive and worker.counts.dead_lettered == 0
    worker.close()


def test_a_topic_that_keeps_failing_is_tried_less_and_less_often(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url, retry_initial_s=0.05, retry_max_s=0.4)
    producer = worker.producer
    worker._start_batch([Record(0)])
    advance_until(worker, lambda: len(producer.sent) == 1)
    waits = []
    for round_ in range(1, 6):
        producer.deliver(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
        waits.append(worker._redelivery["results"].due_at - time.monotonic())
        advance_until(worker, lambda n=round_: len(producer.sent) > n, timeout_s=3)
    expected = [0.05, 0.1, 0.2, 0.4, 0.4]  # CONSUMER_RETRY_INITIAL_S doubled, up to CONSUMER_RETRY_MAX_S
    assert all(0.75 * e <= w <= 1.2 * e for w, e in zip(waits, expected, strict=True)), waits
    assert metric(worker, "consumer_delivery_failures_total", topic="results", cause="topic_authorization_failed") == 5
    worker.close()


def test_an_unknown_topic_refused_at_produce_is_an_outage_not_the_records_fault(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url)
    producer = worker.producer
    producer.raise_on_produce = KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))
    worker._start_batch([Record(0)])
    advance_until(worker, lambda: worker._redelivery["results"].due_at is not None)
    assert worker.counts.dead_lettered == 0 and producer.sent == []
    producer.raise_on_produce = None
    advance_until(worker, lambda: len(producer.sent) == 1)
    assert producer.sent[0]["topic"] == "results"
    worker.close()


def test_a_result_too_large_for_the_topic_is_still_dead_lettered(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url)
    producer = worker.producer
    worker._start_batch([Record(0)])
    advance_until(worker, lambda: len(producer.sent) == 1)
    producer.deliver(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert [m["topic"] for m in producer.sent] == ["results", "dlq"]
    assert header_dict(producer.sent[1]["headers"])[Header.ERROR_CODE] == "result_refused"
    producer.deliver(None)
    advance_until(worker, lambda: worker.consumer.commits)
    assert worker._redelivery["results"].due_at is None
    worker.close()


def test_dead_letters_the_topic_did_not_take_wait_too(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url, unhealthy_after_s=30)
    producer = worker.producer
    worker._start_batch([Record(0, value=b"not a jpeg")])
    assert producer.sent[0]["topic"] == "dlq"
    producer.deliver(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    assert metric(worker, "consumer_delivery_failures_total", topic="dead_letter", cause="unknown_topic_or_part") == 1
    assert worker.heartbeat.alive, "not yet CONSUMER_UNHEALTHY_AFTER_S"
    advance_until(worker, lambda: len(producer.sent) == 2)
    assert producer.sent[1] == producer.sent[0]
    producer.deliver(None)
    advance_until(worker, lambda: worker.consumer.commits)
    assert worker.counts.dead_lettered == 1, "one dead letter, produced twice"
    worker.close()


def test_stopping_does_not_wait_for_a_topic_that_takes_nothing(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url, shutdown_timeout_s=30)
    producer = worker.producer
    worker._start_batch([Record(0)])
    advance_until(worker, lambda: len(producer.sent) == 1)
    producer.deliver(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    started = time.monotonic()
    worker.close()
    assert time.monotonic() - started < 5 and worker.consumer.commits == []


@pytest.mark.parametrize("payload", ["full", "headers"])
def test_dead_letter_payload_full_or_headers_only(tmp_path, stand_in, payload):
    worker = make_worker(tmp_path, stand_in.url, dead_letter_payload=payload)
    value = b"\xff\xd8 not a whole jpeg"
    worker._start_batch([Record(7, value=value)])
    letter = worker.producer.sent[0]
    headers = header_dict(letter["headers"])
    assert headers[Header.ERROR_CODE] == "not_a_jpeg" and headers[Header.SEQ] == "7", "original headers kept"
    if payload == "full":
        assert letter["value"] == value and Header.ERROR_VALUE_DROPPED not in headers
    else:
        assert letter["value"] == b"" and headers[Header.ERROR_VALUE_DROPPED] == str(len(value))
    worker.close()
