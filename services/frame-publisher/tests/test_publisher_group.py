"""Publishers as a group, against the real broker: publisher processes in registry mode share the registry's
streams, follow its changes within seconds, take over the streams of a killed member after the group's session
timeout, and report each stream's status; a source that fails is retried alone, and a changed definition
restarts only its stream.

The measured figures (start, stop and takeover times) are printed: run with -s to see them."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.fixtures.pipeline import topic_env
from tools.harness.processes import ServiceProcess, free_port, publisher_group_process, publisher_url
from vidpipe.contract import parse_frame_headers
from vidpipe.kafka import KafkaSettings, consumer_config, ensure_topics
from vidpipe.registry_client import RegistryWriter
from vidpipe.stream_registry import StreamDefinition, partition_for
from vidpipe.stream_status import StreamStatus, decode_status, status_topic_spec

pytestmark = pytest.mark.broker

SESSION_TIMEOUT_S = 10.0
TAKEOVER_MARGIN_S = 8.0  # after the session timeout: a heartbeat interval, the rebalance, the source's first frame
FOLLOW_S = 10.0  # a registry change reaches the frames within this


def partition_of(stream_id: str, partitions: int) -> int:
    """Where the registry writer puts a stream id (Kafka's murmur2 key hash). Checked against the broker below."""
    return partition_for(stream_id, partitions)


def one_per_partition(partitions: int, prefix: str) -> list[str]:
    found: dict[int, str] = {}
    for n in range(1000):
        found.setdefault(partition_of(f"{prefix}-{n}", partitions), f"{prefix}-{n}")
        if len(found) == partitions:
            return [found[p] for p in range(partitions)]
    raise AssertionError("no ids found for every partition")


def definition(stream_id: str, source: str | Path, **fields: Any) -> StreamDefinition:
    return StreamDefinition(id=stream_id, source=str(source), loop=True, target_fps=5, resize="320", **fields)


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every_s)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


class TopicLog:
    """Every record of a topic, read from the start of all its partitions by a thread (no group)."""

    def __init__(self, kafka: KafkaSettings, topic: str, partitions: int):
        self.records: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:8]}"))
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            found = [m for m in self._consumer.consume(200, timeout=0.2) if not m.error()]
            with self._lock:
                self.records.extend(found)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.records)


class Frames(TopicLog):
    def of(self, stream_id: str) -> list[tuple[float, int]]:
        """(capture time in s, epoch) of each of the stream's frames, in capture order."""
        metas = [parse_frame_headers(r.headers()) for r in self.snapshot() if r.key() == stream_id.encode()]
        return sorted((m.capture_ts_us / 1e6, m.epoch) for m in metas)

    def first_after(self, stream_id: str, after: float) -> float | None:
        return next((t for t, _epoch in self.of(stream_id) if t >= after), None)

    def last(self, stream_id: str) -> float | None:
        frames = self.of(stream_id)
        return frames[-1][0] if frames else None

    def epochs(self, stream_id: str, after: float = 0.0, before: float = float("inf")) -> set[int]:
        return {epoch for t, epoch in self.of(stream_id) if after <= t < before}

    def longest_gap(self, stream_id: str) -> float:
        times = [t for t, _epoch in self.of(stream_id)]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def wait_first(self, stream_id: str, after: float, timeout_s: float = 3 * FOLLOW_S) -> float:
        first = wait_for(lambda: self.first_after(stream_id, after), timeout_s, f"a frame of {stream_id}")
        return float(first) - after

    def wait_silent(self, stream_id: str, since: float, quiet_s: float = 2.0, timeout_s: float = 3 * FOLLOW_S) -> float:
        """Seconds from `since` to the stream's last frame, once it has been silent for quiet_s."""
        wait_for(lambda: time.time() - (self.last(stream_id) or 0.0) > quiet_s, timeout_s, f"{stream_id} stopping")
        return (self.last(stream_id) or since) - since


class Statuses(TopicLog):
    def latest(self) -> dict[str, StreamStatus | None]:
        latest: dict[str, StreamStatus | None] = {}
        for record in self.snapshot():
            stream_id, status = decode_status(record.key(), record.value())
            latest[stream_id] = status
        return latest


def readyz(process: ServiceProcess) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(publisher_url(process, "/readyz"), timeout=2) as response:
            return dict(json.load(response))
    except OSError:
        return {}


def carried(process: ServiceProcess) -> set[str]:
    return set(readyz(process).get("streams", {}))


def metrics(process: ServiceProcess) -> str:
    with urllib.request.urlopen(publisher_url(process), timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture
def group_env(kafka_settings, topics) -> dict[str, str]:
    """Fresh status topic and group; statuses every second; a failed source retried within 2 s."""
    status_topic = f"{topics.streams}.status"
    ensure_topics(kafka_settings, [status_topic_spec(status_topic)])
    return {
        **topic_env(topics),
        "TOPICS_STREAMS_STATUS": status_topic,
        "PUBLISHER_GROUP_ID": f"publishers-{uuid.uuid4().hex[:8]}",
        "PUBLISHER_SESSION_TIMEOUT_MS": str(int(SESSION_TIMEOUT_S * 1000)),
        "PUBLISHER_STATUS_INTERVAL_S": "1",
        "PUBLISHER_RECONNECT_MAX_S": "2",
    }


def test_publishers_share_the_registry_follow_it_and_take_over_a_killed_member(
    kafka_bootstrap, kafka_settings, topics, group_env, sample_video, tmp_path
):
    partitions = topics.streams_partitions
    ids = one_per_partition(partitions, "cam")  # 4 streams, one per partition: both pods get some
    fifth = next(f"cam-x{n}" for n in range(100) if partition_of(f"cam-x{n}", partitions) == 0)
    writer = RegistryWriter(kafka_settings, topics.streams)
    for stream_id in ids:
        writer.put(definition(stream_id, sample_video))
    registry = TopicLog(kafka_settings, topics.streams, partitions)
    wait_for(lambda: len(registry.snapshot()) == len(ids), 30, "the registry's records")
    assert {r.key().decode(): r.partition() for r in registry.snapshot()} == {
        s: partition_of(s, partitions) for s in ids
    }
    registry.close()

    frames = Frames(kafka_settings, topics.frames, topics.partitions)
    statuses = Statuses(kafka_settings, group_env["TOPICS_STREAMS_STATUS"], 3)
    pods = {name: publisher_group_process(kafka_bootstrap, tmp_path, name, **group_env).start() for name in ("a", "b")}
    figures: dict[str, Any] = {}
    try:
        for pod in pods.values():
            pod.wait_ready(60)
        # Both carry some, none twice, all of them.
        wait_for(
            lambda: (
                all(carried(p) for p in pods.values())
                and sorted(carried(pods["a"]) | carried(pods["b"])) == sorted(ids)
                and not carried(pods["a"]) & carried(pods["b"])
            ),
            60,
            f"the streams shared by both pods: {[readyz(p) for p in pods.values()]}",
        )
        start = time.time()
        for stream_id in ids:
            frames.wait_first(stream_id, start)

        # A new stream publishes within seconds of its definition.
        written = time.time()
        writer.put(definition(fifth, sample_video))
        figures["start_s"] = frames.wait_first(fifth, written)
        assert figures["start_s"] <= FOLLOW_S, figures

        # A removed stream stops: a tombstone in its status.
        removed, disabled = ids[1], ids[2]
        written = time.time()
        writer.remove(removed)
        figures["remove_stop_s"] = frames.wait_silent(removed, written)
        assert figures["remove_stop_s"] <= FOLLOW_S, figures

        # A disabled one stops: `stopped`.
        written = time.time()
        writer.put(definition(disabled, sample_video, enabled=False))
        figures["disable_stop_s"] = frames.wait_silent(disabled, written)
        assert figures["disable_stop_s"] <= FOLLOW_S, figures

        # A killed pod's streams move to the other after the session timeout.
        remaining = sorted({ids[0], ids[3], fifth})
        victim_name = max(pods, key=lambda name: len(carried(pods[name]) & set(remaining)))
        survivor = pods["b" if victim_name == "a" else "a"]
        moved = sorted(carried(pods[victim_name]) & set(remaining))
        assert moved, [readyz(p) for p in pods.values()]
        killed = time.time()
        pods[victim_name].process.kill()
        for stream_id in moved:
            figures.setdefault("takeover_s", {})[stream_id] = frames.wait_first(stream_id, killed, 60)
        assert carried(survivor) == set(remaining)
        time.sleep(3)  # a few frames past the takeover
        figures["longest_gap_s"] = {s: round(frames.longest_gap(s), 2) for s in remaining}
        assert max(figures["longest_gap_s"].values()) <= SESSION_TIMEOUT_S + TAKEOVER_MARGIN_S, figures
        for stream_id in moved:
            after = frames.epochs(stream_id, killed)
            assert len(after) == 1 and not after & frames.epochs(stream_id, before=killed), "an epoch of its own"

        # Statuses: the survivor's for the streams it carries, none for the removed one, `stopped` when disabled.
        survivor_name = survivor.name

        def settled() -> dict[str, StreamStatus | None] | None:
            latest = statuses.latest()
            carrying = all(
                (s := latest.get(k)) is not None and s.state == "publishing" and s.pod == survivor_name
                for k in remaining
            )
            stopped = (s := latest.get(disabled)) is not None and s.state == "stopped"
            return latest if carrying and stopped and removed in latest and latest[removed] is None else None

        latest = wait_for(settled, 15, f"the statuses: {statuses.latest()}")
        assert all(0 < latest[k].fps <= 6 for k in remaining), latest
        text = metrics(survivor)
        assert "publisher_streams_carried 3.0" in text
        assert f'stream="{removed}"' not in text and f'stream="{disabled}"' not in text, "stopped streams' series go"
        for stream_id in remaining:
            assert f'publisher_frames_published_total{{stream="{stream_id}"}}' in text
    finally:
        print(f"\npublisher group figures: {json.dumps(figures)}")
        for pod in pods.values():
            pod.stop()
        frames.close()
        statuses.close()
        writer.close()


def test_a_failing_source_is_retried_alone_and_a_change_restarts_only_its_stream(
    kafka_bootstrap, kafka_settings, topics, group_env, sample_video, tmp_path
):
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "lobby").write_text(str(sample_video))
    (sources / "gate").write_text("rtsp://admin:Sup3rSecret@127.0.0.1:9/live")  # nothing listens on port 9
    writer = RegistryWriter(kafka_settings, topics.streams)
    for stream_id, source in (("lobby", "secret:lobby"), ("yard", "secret:yard"), ("gate", "secret:gate")):
        writer.put(definition(stream_id, source))
    writer.put(definition("plain", sample_video))
    frames = Frames(kafka_settings, topics.frames, topics.partitions)
    statuses = Statuses(kafka_settings, group_env["TOPICS_STREAMS_STATUS"], 3)
    pod = publisher_group_process(kafka_bootstrap, tmp_path, "solo", PUBLISHER_SOURCES_DIR=str(sources), **group_env)
    pod.start()
    try:
        started = time.time()
        frames.wait_first("lobby", started)
        frames.wait_first("plain", started)

        def failed(stream_id: str) -> StreamStatus | None:
            status = statuses.latest().get(stream_id)
            return status if status is not None and status.state == "failed" and status.last_error else None

        yard = wait_for(lambda: failed("yard"), 20, "yard failing")
        assert "secret:yard" in yard.last_error and "no key 'yard'" in yard.last_error
        gate = wait_for(lambda: failed("gate"), 30, "gate failing")
        assert "Sup3rSecret" not in gate.last_error and "127.0.0.1:9" in gate.last_error, gate
        assert frames.longest_gap("lobby") < 2.0, "the other streams publish on"

        # The missing key appears (the kubelet updates a mounted Secret in place): yard starts at its next try.
        (sources / "yard").write_text(str(sample_video))
        appeared = time.time()
        yard_start = frames.wait_first("yard", appeared, 20)

        # A new quality restarts plain under a new epoch; a new line for lobby (analytics only) restarts nothing.
        time.sleep(1)
        epochs_before = {s: frames.epochs(s) for s in ("lobby", "plain", "yard")}
        changed = time.time()
        writer.put(definition("plain", sample_video, jpeg_quality=60))
        line = {"name": "door", "start": [0.1, 0.5], "end": [0.9, 0.5]}
        writer.put(definition("lobby", "secret:lobby", lines=[line]))
        wait_for(lambda: frames.epochs("plain", changed) - epochs_before["plain"], 20, "plain under a new epoch")
        restart = min(t for t, e in frames.of("plain") if e not in epochs_before["plain"]) - changed
        time.sleep(2)
        assert frames.epochs("lobby", changed) <= epochs_before["lobby"], "lobby ran on"
        assert frames.epochs("yard", changed) <= epochs_before["yard"], "yard ran on"
        print(f"\nfailed source back {yard_start:.2f}s after its secret appeared; restart after {restart:.2f}s")
        assert "Sup3rSecret" not in pod.log_tail(10_000)
    finally:
        pod.stop()
        frames.close()
        statuses.close()
        writer.close()


def test_a_live_camera_by_secret_reference_follows_its_secret_across_a_reconnect(
    kafka_bootstrap, kafka_settings, topics, group_env, tmp_path
):
    from tests.faults.test_sources import RtspServer, rtsp_available

    if not rtsp_available():
        pytest.skip("GStreamer RTSP server not installed: run `make rtsp-deps` (make test does it)")
    sources = tmp_path / "sources"
    sources.mkdir()
    first_port, second_port = free_port(), free_port()
    cameras = [RtspServer(first_port).start()]
    (sources / "door").write_text(f"rtsp://viewer:Door5ecret@127.0.0.1:{first_port}/live")
    writer = RegistryWriter(kafka_settings, topics.streams)
    writer.put(StreamDefinition(id="door", source="secret:door", target_fps=5))
    frames = Frames(kafka_settings, topics.frames, topics.partitions)
    statuses = Statuses(kafka_settings, group_env["TOPICS_STREAMS_STATUS"], 3)
    env = {**group_env, "PUBLISHER_RECONNECT_INITIAL_S": "0.2", "PUBLISHER_RECONNECT_MAX_S": "1"}
    pod = publisher_group_process(kafka_bootstrap, tmp_path, "live", PUBLISHER_SOURCES_DIR=str(sources), **env)
    pod.start()
    try:
        frames.wait_first("door", time.time(), 30)
        wait_for(lambda: (s := statuses.latest().get("door")) is not None and s.state == "publishing", 15, "publishing")

        # The camera moves: its Secret is updated in place, then the old address goes away.
        cameras.append(RtspServer(second_port).start())
        (sources / "door").write_text(f"rtsp://viewer:Door5ecret@127.0.0.1:{second_port}/live")
        cameras[0].stop()
        wait_for(lambda: f"connected to rtsp://***@127.0.0.1:{second_port}/live" in pod.log_tail(200), 30, "moved")
        frames.wait_first("door", time.time(), 15)
        assert 'publisher_reconnects_total{stream="door"} 0.0' not in metrics(pod)
        assert "Door5ecret" not in pod.log_tail(10_000)
    finally:
        pod.stop()
        for camera in cameras:
            camera.stop()
        frames.close()
        statuses.close()
        writer.close()
