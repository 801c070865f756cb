"""The publisher group: pods that share the registry's streams through Kafka's group protocol.

Every pod joins one consumer group (PUBLISHER_GROUP_ID) subscribed to the registry topic; the group's
cooperative-sticky assignor gives each pod some of its partitions, and a pod carries the enabled streams keyed
to its partitions, each on a thread of its own, all through one producer.

- An assigned partition is read from its start (nothing is ever committed: the compacted topic is the state);
  its streams start once the partition has been read to its end, then follow its records: a new or enabled
  stream starts, a removed or disabled one stops, one whose source, rate, size, quality or loop changed
  restarts (a change of lines or zones alone leaves it running).
- A revoked partition's streams stop (their frames flushed, their status `stopped`) before the partition moves;
  a lost one's (this pod was dropped from the group) stop without a word, since another pod has them already.
- A pod that dies is dropped after PUBLISHER_SESSION_TIMEOUT_MS, and its partitions move to the others.
- Every PUBLISHER_STATUS_INTERVAL_S each carried stream's status goes to the status topic (vidpipe.stream_status).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings, consumer_config
from vidpipe.member import GroupMember, TopicPart
from vidpipe.stream_registry import RegistryError, RegistryState, decode_record
from vidpipe.stream_status import StreamStatus, encode_status
from vidpipe.topics import TopicSettings

from .assignment import carried, defined, reconcile
from .publisher import PodProducer
from .settings import PublisherSettings
from .stream_runner import SourceRedactor, StreamRunner

log = logging.getLogger(__name__)

STATUS_WAIT_S = 5.0  # for a stopping stream's last status to be acknowledged


class PublisherGroup(GroupMember):
    def __init__(
        self,
        settings: PublisherSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        heartbeat: Heartbeat,
        redactor: SourceRedactor,
        pod: str,
    ):
        session_ms = settings.session_timeout_ms
        consumer = Consumer(
            consumer_config(
                kafka,
                settings.group_id,
                **{
                    "client.id": f"vidpipe-publisher-{pod}",
                    "session.timeout.ms": session_ms,
                    "heartbeat.interval.ms": max(100, min(3000, session_ms // 3)),
                    "enable.partition.eof": True,  # says when an assigned partition has been read to its end
                },
            )
        )
        self.pod_producers = PodProducer(kafka)  # the pod's one producer: every stream's frames, the statuses
        super().__init__(
            consumer,
            self.pod_producers,
            [topics.streams],
            heartbeat,
            retry_initial_s=settings.reconnect_initial_s,
            retry_max_s=settings.reconnect_max_s,
            shutdown_timeout_s=settings.flush_timeout_s,
            log=log,
        )
        self.settings, self.kafka, self.topics, self.redactor, self.pod = settings, kafka, topics, redactor, pod
        self.states: dict[int, RegistryState] = {}  # per owned partition, read from its start
        self.caught_up: set[int] = set()  # owned partitions read to their end
        self.runners: dict[str, StreamRunner] = {}
        self._status_due = 0.0

    # --- the polling thread ----------------------------------------------------------------------

    def run_once(self) -> None:
        for record in self.consumer.consume(500, timeout=0.2):
            self._take(record)
        self._reconcile()
        if time.monotonic() >= self._status_due:
            self._status_due = time.monotonic() + self.settings.status_interval_s
            every_s = self.settings.status_interval_s
            self._write_statuses([(r.stream_id, r.status(self.pod, every_s)) for r in self._measured()])
        self.producer.poll(0)
        self.pod_producers.replace_failed()
        self.heartbeat.ready = True  # a member with no partition is ready too: there may be more pods than them
        self.heartbeat.beat()

    def _take(self, record: Message) -> None:
        error, partition = record.error(), record.partition()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if partition is not None and partition in self.states:
                    self.caught_up.add(partition)
            else:
                log.warning("registry: %s", error)
            return
        if partition is None or partition not in self.states:
            return  # revoked meanwhile
        try:
            stream_id, definition = decode_record(record.key(), record.value())
        except RegistryError as exc:
            log.warning("registry: skipped a record that breaks the contract: %s", exc)
            return
        self.states[partition].apply(stream_id, definition)

    def _reconcile(self) -> None:
        wanted = carried(self.states, self.caught_up)
        plan = reconcile({k: r.definition for k, r in self.runners.items()}, wanted)
        if plan.empty:
            return
        removed = [k for k in plan.stop if not defined(self.states, k)]
        self._stop_streams(plan.stop, removed=removed)
        self._stop_streams([d.id for d in plan.restart], status=False)
        for definition in plan.update:
            self.runners[definition.id].definition = definition
        for definition in [*plan.start, *plan.restart]:
            partition = next(p for p, s in self.states.items() if definition.id in s.streams)
            self.runners[definition.id] = StreamRunner(
                definition,
                partition,
                self.settings,
                self.kafka,
                self.topics.frames,
                self.pod_producers,
                self.redactor,
            ).start()
            log.info("stream %s: started (registry partition %d)", definition.id, partition)
        self._status_due = 0.0  # the live view learns of the change now, not at the next interval

    def _stop_streams(self, stream_ids: list[str], status: bool = True, removed: list[str] | None = None) -> None:
        """Stop these streams together (each flushes its frames), then write their last status: a tombstone
        for a stream the registry removed, `stopped` otherwise."""
        runners = [self.runners.pop(k) for k in stream_ids if k in self.runners]
        for runner in runners:
            runner.request_stop()
        deadline = time.monotonic() + self.settings.flush_timeout_s + 5.0
        for runner in runners:
            if not runner.join(max(0.0, deadline - time.monotonic())):
                log.warning("stream %s: still stopping; left behind", runner.stream_id)
            log.info("stream %s: stopped", runner.stream_id)
        if status and runners:
            gone, every_s = set(removed or ()), self.settings.status_interval_s
            last = [
                (r.stream_id, None if r.stream_id in gone else r.status(self.pod, every_s, "stopped")) for r in runners
            ]
            self._write_statuses(last, wait_s=STATUS_WAIT_S)

    def _measured(self) -> list[StreamRunner]:
        runners = list(self.runners.values())
        for runner in runners:
            runner.measure_fps()
        return runners

    def _write_statuses(self, statuses: list[tuple[str, StreamStatus | None]], wait_s: float = 0.0) -> None:
        """(stream id, status or None for a tombstone), best effort: a status the producer cannot take now is
        skipped (the next one follows). With wait_s, wait that long for them to be acknowledged (a stopping
        stream's must land before its next owner's)."""
        pending: list[bool] = []
        for key, status in statuses:
            try:
                self.producer.produce(
                    self.topics.streams_status,
                    key=key.encode(),
                    value=encode_status(status) if status is not None else None,
                    on_delivery=lambda _error, _message: pending.append(True),
                )
            except BufferError:
                log.debug("status of %s skipped: the producer is backed up", key)
            except Exception as exc:  # the status topic's trouble never stops the streams
                log.warning("status of %s not written: %s", key, exc)
        deadline = time.monotonic() + wait_s
        while wait_s and len(pending) < len(statuses) and time.monotonic() < deadline:
            self.producer.poll(0.05)

    # --- rebalances ------------------------------------------------------------------------------

    def on_assigned(self, parts: set[TopicPart]) -> None:
        # From the start, whatever was committed for the group (nothing should be).
        self.consumer.incremental_assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(parts)])
        for _topic, partition in parts:
            self.states[partition] = RegistryState()
            self.caught_up.discard(partition)

    def on_revoking(self, parts: set[TopicPart]) -> None:
        partitions = {p for _t, p in parts}
        self._stop_streams([k for k, r in self.runners.items() if r.partition in partitions])

    def on_released(self, parts: set[TopicPart]) -> None:
        partitions = {p for _t, p in parts}
        # Lost, not revoked: another pod carries them already, so no last status from here.
        self._stop_streams([k for k, r in self.runners.items() if r.partition in partitions], status=False)
        for partition in partitions:
            self.states.pop(partition, None)
            self.caught_up.discard(partition)

    def close(self) -> None:
        """Stop every stream (flushing its frames, writing `stopped`), then leave the group."""
        self._stop_streams(list(self.runners))
        super().close()

    def details(self) -> dict[str, Any]:
        """For /readyz: this pod's partitions and streams."""
        return {
            "pod": self.pod,
            "partitions": sorted(self.states),
            "streams": {k: r.state for k, r in sorted(self.runners.items())},
        }
