"""What the analytics service's tests share: synthetic results (a box walking across a line and through
a zone), their topics, a streams file, and reading the service's HTTP answers. No model: the results
are written as the consumer would write them."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tools.harness.processes import ServiceProcess
from tools.harness.topics import fresh_topics
from vidpipe.contract import encode_result
from vidpipe.kafka import KafkaSettings, producer_config
from vidpipe.topics import TopicSettings

T = TypeVar("T")

WIDTH, HEIGHT = 640, 360
FRAME_US = 40_000  # 25 fps of capture time
BOX_W, BOX_H = 60, 120
STEP_PX = 16
FIRST_CX = 100
PASSAGE_FRAMES = 32  # centre x 100 .. 596
ANCHOR_Y = 300  # the box's bottom edge: where it touches the ground

# A vertical line at x = 0.5 drawn upwards: walking from start to end, the right-hand side is x > 0.5,
# so a box moving right crosses it "in" (vidpipe.contract, events). The zone spans x 0.6-0.9 (384-576 px).
GATE = {"name": "gate", "start": [0.5, 1.0], "end": [0.5, 0.0]}
PEN = {"name": "pen", "polygon": [[0.6, 0.2], [0.9, 0.2], [0.9, 0.9], [0.6, 0.9]]}


def centre_x(k: int) -> int:
    return FIRST_CX + STEP_PX * (k % PASSAGE_FRAMES)


def first_inside(x_min: float = 0.6 * WIDTH, x_max: float = 0.9 * WIDTH) -> tuple[int, int]:
    """The first and last frame of a passage whose anchor is inside the zone (its x range)."""
    inside = [k for k in range(PASSAGE_FRAMES) if x_min <= centre_x(k) <= x_max]
    return inside[0], inside[-1]


def crossing_frame() -> int:
    """The first frame of a passage seen on the line's right-hand side (x > 320)."""
    return next(k for k in range(PASSAGE_FRAMES) if centre_x(k) > WIDTH / 2)


def analytics_topics(kafka: KafkaSettings, partitions: int = 3) -> TopicSettings:
    """Fresh topics, the events, registry and status topics included (the `topics` fixture leaves events at its
    default)."""
    return fresh_topics(kafka, partitions=partitions, streams_partitions=2)


def analytics_env(topics: TopicSettings, group: str | None = None) -> dict[str, str]:
    return {
        "TOPICS_FRAMES": topics.frames,
        "TOPICS_RESULTS": topics.results,
        "TOPICS_DEAD_LETTER": topics.dead_letter,
        "TOPICS_EVENTS": topics.events,
        "TOPICS_PARTITIONS": str(topics.partitions),
        "TOPICS_STREAMS": topics.streams,
        "TOPICS_STREAMS_PARTITIONS": str(topics.streams_partitions),
        "TOPICS_STREAMS_STATUS": topics.streams_status,
        "ANALYTICS_GROUP_ID": group or f"analytics-{uuid.uuid4().hex[:8]}",
        # The tests' frames come 25 per second of capture time, as configured here.
        "ANALYTICS_FRAME_RATE": "25",
    }


def write_streams_file(path: Path, analytics: dict[str, Any], streams: Iterable[str] | None = None) -> Path:
    """A streams configuration (JSON is YAML) with an `analytics` section."""
    names = list(streams) if streams is not None else list(analytics)
    path.write_text(json.dumps({"streams": [{"name": n} for n in names], "analytics": analytics}, indent=2))
    return path


def result_doc(
    stream: str,
    seq: int,
    capture_ts_us: int,
    boxes: list[list[float]],
    label: str = "person",
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> dict:
    """A FrameResult as the consumer publishes it."""
    return {
        "schema_version": "1",
        "stream_id": stream,
        "seq": seq,
        "capture_ts_us": capture_ts_us,
        "processed_ts_us": capture_ts_us + 50_000,
        "width": size[0],
        "height": size[1],
        "model_name": "synthetic",
        "model_version": "1",
        "model_ms": 1.0,
        "request_ms": 2.0,
        "detections": [{"class_id": 0, "label": label, "score": 0.9, "box": [float(v) for v in box]} for box in boxes],
    }


def walking_box(k: int, height: int = HEIGHT) -> list[float]:
    """Frame k's box: its bottom edge (the anchor) at 5/6 of the frame's height, inside the pen's y range."""
    bottom = height * ANCHOR_Y / HEIGHT
    top = bottom - height * BOX_H / HEIGHT
    cx = centre_x(k)
    return [cx - BOX_W / 2, top, cx + BOX_W / 2, bottom]


def passage_docs(stream: str, first_seq: int, start_ts_us: int, frames: int = PASSAGE_FRAMES) -> list[dict]:
    """A box walking right, frame after frame: across the gate, into the pen and out of it."""
    return [result_doc(stream, first_seq + k, start_ts_us + k * FRAME_US, [walking_box(k)]) for k in range(frames)]


def produce_values(kafka: KafkaSettings, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    producer = Producer(producer_config(kafka))
    count = 0
    for key, value in records:
        producer.produce(topic, key=key, value=value)
        count += 1
    assert producer.flush(30) == 0
    return count


def produce_results(kafka: KafkaSettings, topic: str, docs: Iterable[dict]) -> int:
    return produce_values(kafka, topic, ((d["stream_id"].encode(), encode_result(d)) for d in docs))


def http(url: str, timeout_s: float = 10.0, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout_s) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    status, _, body = http(url, headers=headers)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def wait_for(check: Callable[[], T | None], what: str, service: ServiceProcess, timeout_s: float = 90.0) -> T:
    """Poll until check() returns something truthy; fail naming `what` (with the service's log) if the
    service exits or the time runs out. The timeout only bounds a hang: nothing asserts a duration."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert service.running, f"{service.name} exited while waiting for {what}:\n{service.log_tail()}"
        try:
            value = check()
        except (OSError, AssertionError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout_s:.0f}s:\n{service.log_tail()}")


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text exposition (None if absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
