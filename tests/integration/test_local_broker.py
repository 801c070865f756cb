"""The local Apache Kafka broker (tools/kafka/broker.py) is real: topics, headers, and data survive restarts."""

from __future__ import annotations

import time
import uuid

import pytest

from tools.kafka.broker import BrokerError, LocalBroker

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.broker


def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 30.0):
    """Read every partition from the beginning (no group offsets involved) until `expected` messages arrived."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got, deadline = [], time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got.append(msg)
        return got
    finally:
        consumer.close()


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    delivered = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": 8 * 1024 * 1024,
        }
    )
    producer.produce(
        topic, key=key, value=value, headers=headers, on_delivery=lambda err, msg: delivered.append(err or msg)
    )
    assert producer.flush(30) == 0
    assert len(delivered) == 1 and not isinstance(delivered[0], confluent_kafka.KafkaError), delivered


def test_local_broker_round_trip_and_restarts(tmp_path):
    data_dir = tmp_path / "kafka"
    with LocalBroker(data_dir, port=0, controller_port=0, die_with_parent=True) as broker:
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert broker.last_start_seconds is not None and broker.last_start_seconds < 60
        pid = broker.pid
        assert broker.start().pid == pid, "start() on a running broker must be a no-op"

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        topic = "frames.test"
        for future in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
            future.result(30)
        assert set(admin.list_topics(topic, timeout=10).topics[topic].partitions) == {0, 1, 2}

        # the broker refuses to create topics on first use (auto.create.topics.enable=false): a record
        # sent to a topic nobody created is not delivered, and the topic still does not exist after it
        outcome = []
        producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 3000})
        producer.produce("never.created", value=b"x", on_delivery=lambda err, msg: outcome.append(err))
        producer.flush(10)
        assert len(outcome) == 1 and outcome[0] is not None, outcome
        assert "never.created" not in admin.list_topics(timeout=10).topics

        headers = [("stream-id", b"cam-1"), ("content-type", b"image/jpeg"), ("frame-seq", b"42")]
        value = bytes(range(256)) * 8192  # 2 MiB: over Kafka's default 1 MiB limit, under our 8 MiB
        _produce(broker.bootstrap, topic, b"cam-1", value, headers)

        def check(label: str):
            msgs = _consume_all(broker.bootstrap, topic, 3, expected=1)
            assert len(msgs) == 1, f"{label}: {len(msgs)} messages"
            msg = msgs[0]
            assert msg.key() == b"cam-1" and msg.value() == value, label
            assert msg.headers() == headers, label

        check("before restart")

        broker.restart()  # SIGTERM, same data dir and ports
        assert broker.pid not in (None, pid)
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        check("after a graceful restart")

        broker.restart(graceful=False)  # SIGKILL: a crash, then log recovery
        check("after a crash restart")

        # a new object on the same data dir finds the running broker and its saved ports
        same = LocalBroker(data_dir)
        assert same.is_running() and same.bootstrap == broker.bootstrap and same.pid == broker.pid

    assert not broker.is_running()
    assert not broker.pid_path.exists()
    with pytest.raises(BrokerError):
        broker.wait(timeout=2)
