"""The metrics the operations alerts read (docs/OPERATIONS.md): capture-to-result latency per stream,
observed when the broker acknowledges a result, and the lag of the partitions this member owns."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from consumer_support import FRAMES_TOPIC, FakeConsumer, Record, StandIn, advance_until, make_worker, metric
from prometheus_client import CollectorRegistry, generate_latest

from consumer_service.metrics import MAX_LATENCY_STREAMS, OTHER_STREAMS, ConsumerMetrics

LATENCY = "consumer_capture_to_result_seconds"


@pytest.fixture(scope="module")
def stand_in():
    server = StandIn()
    yield server
    server.close()


def test_a_result_counts_its_capture_to_result_latency_once_the_broker_acknowledges_it(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url)
    producer = worker.producer
    worker._start_batch([Record(0), Record(1)])
    advance_until(worker, lambda: len(producer.sent) == 2)
    assert metric(worker, f"{LATENCY}_count", stream="cam") == 0, "not before the broker has it"

    producer.deliver(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert metric(worker, f"{LATENCY}_count", stream="cam") == 0, "a failed delivery is no result"
    advance_until(worker, lambda: len(producer.sent) == 4, timeout_s=3)
    producer.deliver(None)
    assert metric(worker, f"{LATENCY}_count", stream="cam") == 2
    assert 0 < metric(worker, f"{LATENCY}_sum", stream="cam") < 60
    assert metric(worker, f"{LATENCY}_bucket", stream="cam", le="300.0") == 2
    assert b'consumer_capture_to_result_seconds_bucket{le="2.0",stream="cam"}' in generate_latest(worker.registry)
    worker.close()


def test_streams_past_the_bound_share_one_series():
    metrics = ConsumerMetrics(CollectorRegistry())
    now_us = time.time_ns() // 1000
    for n in range(MAX_LATENCY_STREAMS + 5):
        metrics.observe_result(f"cam-{n}", now_us)
    metrics.observe_result("cam-0", now_us)  # a stream seen before keeps its own series
    samples = {s.labels["stream"] for s in metrics.capture_to_result.collect()[0].samples}
    assert len(samples) == MAX_LATENCY_STREAMS + 1 and OTHER_STREAMS in samples


class LaggingConsumer(FakeConsumer):
    """Owns partitions 0 and 1 of the frames topic: high watermarks 100 and 7, positions 40 and 7."""

    def consume(self, num_messages: int = 1, timeout: float = 0) -> list:
        return []

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, {0: 40, 1: 7}[p.partition]) for p in partitions]

    broker_high = {0: 100, 1: 7}  # the broker's watermarks; the cached ones stay where the last fetch left them

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        return 0, ({0: 100, 1: 7} if cached else self.broker_high)[partition.partition]

    def pause(self, partitions: list) -> None:
        pass

    def resume(self, partitions: list) -> None:
        pass


def test_the_lag_of_owned_partitions_is_reported_and_dropped_when_they_move(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url)
    worker.consumer = LaggingConsumer()
    worker.run_once()
    assert worker.registry.get_sample_value("consumer_lag", {"partition": "0"}) == 60
    assert worker.registry.get_sample_value("consumer_lag", {"partition": "1"}) == 0

    worker._on_revoke(worker.consumer, [TopicPartition(FRAMES_TOPIC, 0)])
    assert worker.registry.get_sample_value("consumer_lag", {"partition": "0"}) is None, "its new owner reports it"
    assert worker.registry.get_sample_value("consumer_lag", {"partition": "1"}) == 0
    worker.close()


def test_paused_in_an_outage_the_lag_keeps_growing_with_what_the_cameras_publish(tmp_path, stand_in):
    """Paused partitions are not fetched, so their cached watermarks stand still: the lag alert
    (VidpipeConsumerLagGrowing) needs the broker's."""
    worker = make_worker(tmp_path, stand_in.url)
    worker.consumer = consumer = LaggingConsumer()
    worker.assigned.update({(FRAMES_TOPIC, 0), (FRAMES_TOPIC, 1)})
    worker.set_paused(True)
    consumer.broker_high = {0: 250, 1: 30}
    worker.observe_lag(worker.metrics.set_lag, every_s=0)
    assert worker.registry.get_sample_value("consumer_lag", {"partition": "0"}) == 210
    assert worker.registry.get_sample_value("consumer_lag", {"partition": "1"}) == 23
    worker.close()
