"""The stream registry's I/O (stream_registry.py is its pure core): a writer that puts and removes definitions,
and a follower that reads every partition of the compacted topic from its start and then follows it, so its
holder always knows every stream (the analytics service, the control API)."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Self

from .backoff import Backoff
from .contract import READER_GROUP
from .kafka import KafkaSettings, consumer_config, producer_config
from .stream_registry import (
    STREAMS_TOPIC,
    Change,
    RegistryError,
    RegistryState,
    StreamDefinition,
    decode_record,
    encode_definition,
)

log = logging.getLogger(__name__)


class RegistryUnavailable(RuntimeError):
    """The broker did not take a registry write (an outage: retry later)."""


class RegistryWriter:
    """Puts definitions and tombstones, each acknowledged by the broker before the call returns."""

    def __init__(self, kafka: KafkaSettings, topic: str = STREAMS_TOPIC, timeout_s: float = 15.0):
        from confluent_kafka import Producer

        self.topic = topic
        self.timeout_s = timeout_s
        # murmur2: where Java clients put the same key (stream_registry.partition_for).
        self._producer = Producer(producer_config(kafka, **{"linger.ms": 0, "partitioner": "murmur2_random"}))
        self._lock = threading.Lock()

    def put(self, definition: StreamDefinition) -> None:
        self._send(definition.id, encode_definition(definition))

    def remove(self, stream_id: str) -> None:
        self._send(stream_id, None)

    def _send(self, key: str, value: bytes | None) -> None:
        errors: list[Any] = []
        with self._lock:
            self._producer.produce(
                self.topic, key=key.encode(), value=value, on_delivery=lambda err, _msg: errors.append(err)
            )
            remaining = self._producer.flush(self.timeout_s)
        if remaining or (errors and errors[0] is not None):
            raise RegistryUnavailable(
                f"the registry topic {self.topic} did not take the write for {key!r}: "
                f"{errors[0] if errors and errors[0] is not None else 'no acknowledgement in time'}"
            )

    def close(self) -> None:
        self._producer.flush(self.timeout_s)


class CompactedTopicFollower(ABC):
    """A compacted topic read whole and then followed on a thread: every partition from its start, no consumer
    group (every follower sees everything). `apply` takes each record. An error (a partition without a leader
    just after the topic was created, a broker restart) reads the topic again from its start after a backoff:
    safe, since applying a record twice changes nothing. Ready once everything the topic held when a read
    began has been applied."""

    name = "follower"

    def __init__(self, kafka: KafkaSettings, topic: str, poll_s: float = 0.2):
        self.kafka, self.topic, self.poll_s = kafka, topic, poll_s
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    @abstractmethod
    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic, on the follower's thread."""

    def start(self) -> Self:
        self._thread.start()
        return self

    def wait_ready(self, timeout_s: float) -> bool:
        """True once everything the topic held at start-up has been read."""
        return self._ready.wait(timeout_s)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        backoff = Backoff(1.0, 30.0)
        while not self._stop.is_set():
            try:
                self._follow()
                return
            except Exception as exc:
                delay = backoff.next()
                log.warning("%s: reading %s again from its start in %.1f s (%s)", self.name, self.topic, delay, exc)
                self._stop.wait(delay)

    def _follow(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        config = consumer_config(self.kafka, READER_GROUP)  # never joined nor committed: see READER_GROUP
        consumer = Consumer(config)
        try:
            partitions = self._partitions(consumer)
            if partitions is None:
                return
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1] for p in partitions}
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=self.poll_s):
                    if message.error():
                        log.warning("%s: %s", self.name, message.error())
                        continue
                    self.apply(message.key(), message.value())
                if not self._ready.is_set() and all(
                    p.offset >= ends[p.partition] or ends[p.partition] == 0 for p in self._positions(consumer, ends)
                ):
                    self._ready.set()
        finally:
            consumer.close()

    def _positions(self, consumer: Any, ends: dict[int, int]) -> list[Any]:
        from confluent_kafka import TopicPartition

        positions = consumer.position([TopicPartition(self.topic, p) for p in ends])
        # A partition not read yet has no position (negative): behind unless it is empty.
        return [p if p.offset >= 0 else TopicPartition(self.topic, p.partition, 0) for p in positions]

    def _partitions(self, consumer: Any) -> list[int] | None:
        """The topic's partitions, waiting for the topic to exist (its creator may start later)."""
        while not self._stop.is_set():
            metadata = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                return sorted(metadata.partitions)
            log.info("%s: waiting for topic %s", self.name, self.topic)
            self._stop.wait(1.0)
        return None


class RegistryFollower(CompactedTopicFollower):
    """Every definition of the registry, kept current. `on_change` runs on the follower's thread for each
    change; a record that breaks the contract is logged and skipped (the rest of the registry still applies)."""

    name = "registry-reader"

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str = STREAMS_TOPIC,
        on_change: Callable[[Change], None] | None = None,
        poll_s: float = 0.2,
    ):
        super().__init__(kafka, topic, poll_s)
        self.on_change = on_change
        self.state = RegistryState()
        self.invalid: dict[str, str] = {}  # stream id -> why its latest record was refused
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, StreamDefinition]:
        with self._lock:
            return dict(self.state.streams)

    def get(self, stream_id: str) -> StreamDefinition | None:
        with self._lock:
            return self.state.streams.get(stream_id)

    @property
    def version(self) -> int:
        return self.state.version

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            stream_id, definition = decode_record(key, value)
        except RegistryError as exc:
            stream = (key or b"?").decode("utf-8", "replace")
            with self._lock:
                self.invalid[stream] = str(exc)
            log.warning("registry: skipped a record that breaks the contract: %s", exc)
            return
        with self._lock:
            self.invalid.pop(stream_id, None)
            change = self.state.apply(stream_id, definition)
        if change is not None and self.on_change is not None:
            try:
                self.on_change(change)
            except Exception:
                log.exception("registry: a change of %s could not be applied", stream_id)
