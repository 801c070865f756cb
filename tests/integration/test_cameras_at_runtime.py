"""Cameras at runtime, end to end against the real broker and the real model: two publisher processes share
the registry's streams; a stream added through the control API has results within seconds, a removed one stops;
killing a publisher moves its streams to the other within the group's session timeout; a line moved through the
API applies without resetting any stream's tracker. Timings are printed (run with -s)."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from tests.analytics_support import analytics_env
from tests.fixtures.pipeline import topic_env
from tools.harness.processes import (
    analytics_process,
    analytics_url,
    consumer_process,
    free_port,
    inference_process,
    publisher_group_process,
    publisher_url,
)
from tools.harness.topics import fresh_topics
from vidpipe.contract import TrackerReset, decode_event
from vidpipe.kafka import KafkaSettings, consumer_config
from vidpipe.stream_registry import partition_for

pytestmark = [pytest.mark.broker, pytest.mark.model]

TOKEN = "cameras-at-runtime-token-for-tests"
SESSION_TIMEOUT_S = 10.0
FOLLOW_S = 10.0  # a registry change reaches the results within this
TAKEOVER_S = SESSION_TIMEOUT_S + 8.0  # a heartbeat, the rebalance, the source's first frame, the model
PARTITIONS = 4


def one_per_partition(prefix: str) -> list[str]:
    """Stream ids that land one in each registry partition (Kafka's murmur2 key hash), so that both
    publishers carry some."""
    found: dict[int, str] = {}
    for n in range(1000):
        found.setdefault(partition_for(f"{prefix}-{n}", PARTITIONS), f"{prefix}-{n}")
    return [found[p] for p in range(PARTITIONS)]


class Topic:
    """(received at, record) of every record of a topic, read by a thread with a group of its own."""

    def __init__(self, kafka: KafkaSettings, topic: str):
        self.records: list[tuple[float, Any]] = []
        self._consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:8]}"))
        self._consumer.subscribe([topic])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(200, timeout=0.2):
                if not message.error():
                    with self._lock:
                        self.records.append((time.monotonic(), message))

    def since(self, start: float) -> list[tuple[float, Any]]:
        with self._lock:
            return [(t, m) for t, m in self.records if t >= start]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def results_by_stream(topic: Topic, start: float = 0.0) -> dict[str, list[float]]:
    found: dict[str, list[float]] = defaultdict(list)
    for received, message in topic.since(start):
        found[json.loads(message.value())["stream_id"]].append(received)
    return found


def wait_for(check, timeout_s: float, what: str, processes=()) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        for process in processes:
            assert process.running, f"{process.name} exited:\n{process.log_tail()}"
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


def api(service, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(analytics_url(service, path), method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, data = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read()
    return status, json.loads(data) if data else None


def carried(publisher) -> set[str]:
    import urllib.request

    with urllib.request.urlopen(publisher_url(publisher, "/readyz"), timeout=5) as response:
        ready = json.loads(response.read())
    return set(ready.get("streams", {}))


def test_streams_follow_the_registry_and_a_killed_publishers_streams_move(
    kafka_bootstrap, kafka_settings, sample_video, tmp_path: Path
):
    run = uuid.uuid4().hex[:8]
    topics = fresh_topics(kafka_settings, streams_partitions=PARTITIONS)
    env = {**topic_env(topics), "TOPICS_EVENTS": topics.events}
    inference_port = free_port()
    inference = inference_process(inference_port, tmp_path)
    consumer = consumer_process(
        kafka_bootstrap,
        f"http://127.0.0.1:{inference_port}",
        f"file://{tmp_path / 'archive'}",
        tmp_path,
        CONSUMER_GROUP_ID=f"consumer-{run}",
        **env,
    )
    analytics = analytics_process(
        kafka_bootstrap, tmp_path, None, None, free_port(), ANALYTICS_API_TOKEN=TOKEN, **analytics_env(topics)
    )
    group = {**env, "PUBLISHER_GROUP_ID": f"publishers-{run}", "PUBLISHER_SESSION_TIMEOUT_MS": "10000"}
    publishers = [publisher_group_process(kafka_bootstrap, tmp_path, name=f"publisher-{i}", **group) for i in (1, 2)]
    everything = [inference, consumer, analytics, *publishers]
    results, events = Topic(kafka_settings, topics.results), Topic(kafka_settings, topics.events)

    def definition(stream_id: str, **fields: Any) -> dict[str, Any]:
        return {"id": stream_id, "source": str(sample_video), "loop": True, "target_fps": 2, "resize": "320", **fields}

    streams = one_per_partition(f"cam-{run}")
    fifth = f"cam-{run}-new"
    line = {"name": "street", "start": [0.6, 0.85], "end": [0.6, 0.45]}
    try:
        for process in everything:
            process.start()
        analytics.wait_ready(120)
        inference.wait_ready(180)
        for stream in streams:
            assert api(analytics, "PUT", f"/api/registry/streams/{stream}", definition(stream))[0] == 201
        for publisher in publishers:
            publisher.wait_ready(60)

        wait_for(lambda: set(streams) <= set(results_by_stream(results)), 120, "results of all four", everything)
        # The second member to join takes its share in an incremental rebalance of its own.
        wait_for(lambda: all(carried(p) for p in publishers), 60, "both publishers carrying streams", everything)

        # A fifth stream, added through the API: its results within FOLLOW_S.
        added = time.monotonic()
        assert api(analytics, "PUT", f"/api/registry/streams/{fifth}", definition(fifth))[0] == 201
        first = wait_for(lambda: results_by_stream(results, added).get(fifth), FOLLOW_S, "the added stream's results")
        print(f"\nadded stream: first result after {first[0] - added:.2f} s")

        # A line moved on one stream: no stream's tracker starts again (no tracker_reset but the first).
        moved = time.monotonic()
        status, _ = api(analytics, "PATCH", f"/api/registry/streams/{streams[0]}", {"lines": [line]})
        assert status == 200
        status, answer = api(analytics, "GET", f"/api/registry/streams/{streams[0]}")
        assert answer["definition"]["lines"] == [line]

        # A stream removed: its frames stop within FOLLOW_S.
        removed_stream = streams[1]
        removed = time.monotonic()
        assert api(analytics, "DELETE", f"/api/registry/streams/{removed_stream}")[0] == 204
        time.sleep(FOLLOW_S + 3)
        late = [t for t in results_by_stream(results, removed).get(removed_stream, []) if t > removed + FOLLOW_S]
        assert not late, f"{len(late)} results of the removed stream after {FOLLOW_S:.0f} s"

        # A publisher killed: its streams resume on the other within the session timeout (+ the margin).
        victim, survivor = publishers
        survivor_before = carried(survivor)
        moving = carried(victim) & {streams[0], streams[2], streams[3], fifth}
        assert moving, "the killed publisher carried streams"
        killed = time.monotonic()
        victim.process.send_signal(signal.SIGKILL)
        for stream in moving:
            resumed = wait_for(
                lambda s=stream: [t for t in results_by_stream(results, killed + SESSION_TIMEOUT_S / 2).get(s, [])],
                TAKEOVER_S + 10,
                f"{stream} resumed on the survivor",
                [survivor, consumer, inference, analytics],
            )
            print(f"{stream}: results again {resumed[0] - killed:.1f} s after the kill")
        live = {s for s in streams + [fifth] if s != removed_stream}
        times = results_by_stream(results, killed - 5)
        for stream in live:
            arrived = sorted(times.get(stream, []))
            gaps = [b - a for a, b in zip(arrived, arrived[1:], strict=False)]
            assert arrived and max(gaps, default=0.0) <= TAKEOVER_S + 10, (stream, max(gaps, default=0.0))
        assert carried(survivor) == live

        # The moved line reset no tracker: the streams the survivor carried all along have no tracker_reset
        # since (the streams that came over from the killed publisher start again under a new epoch).
        stayed = survivor_before & live
        resets = [
            event
            for _, message in events.since(moved)
            if isinstance(event := decode_event(message.value()), TrackerReset) and event.stream_id in stayed
        ]
        assert not resets, resets
        for process in (consumer, analytics, inference, survivor):
            assert process.running, process.log_tail()
    finally:
        results.close()
        events.close()
        for process in everything:
            if process.running:
                process.stop()
