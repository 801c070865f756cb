"""Small helpers shared by integration tests (real broker, real processes)."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import onnx
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from onnx import TensorProto, helper

from vidpipe.contract import FrameMeta
from vidpipe.kafka import KafkaSettings, consumer_config, producer_config


def video_jpegs(path, count: int, every: int = 1) -> list[bytes]:
    capture = cv2.VideoCapture(str(path))
    frames: list[bytes] = []
    index = 0
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        index += 1
    capture.release()
    return frames


def jpeg_size(data: bytes) -> tuple[int, int]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image.shape[1], image.shape[0]


def produce_frames(
    settings: KafkaSettings, topic: str, stream_id: str, jpegs: list[bytes], first_seq: int = 0
) -> list[int]:
    producer = Producer(producer_config(settings))
    seqs = []
    for offset, data in enumerate(jpegs):
        width, height = jpeg_size(data)
        meta = FrameMeta(stream_id, first_seq + offset, time.time_ns() // 1000, width, height)
        producer.produce(topic, key=meta.key, value=data, headers=meta.headers())
        seqs.append(meta.seq)
    assert producer.flush(30) == 0
    return seqs


def produce_raw(settings: KafkaSettings, topic: str, key: bytes, value: bytes | None, headers) -> None:
    producer = Producer(producer_config(settings))
    producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


def read_all(settings: KafkaSettings, topic: str, expect: int, timeout_s: float = 60.0, until=None) -> list:
    """The topic's records, read until there are `expect` of them (or until(records) is true, when given)
    or timeout_s has passed."""
    consumer = Consumer(consumer_config(settings, f"reader-{time.time_ns()}"))
    consumer.subscribe([topic])
    records = []
    deadline = time.monotonic() + timeout_s
    done = until or (lambda found: len(found) >= expect)
    try:
        while not done(records) and time.monotonic() < deadline:
            records.extend(m for m in consumer.consume(100, timeout=0.5) if not m.error())
    finally:
        consumer.close()
    return records


def committed_offsets(settings: KafkaSettings, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer(consumer_config(settings, group))
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [p.offset for p in parts]
    finally:
        consumer.close()


def results_by_seq(records) -> dict[tuple[str, int], list[dict]]:
    found: dict[tuple[str, int], list[dict]] = {}
    for record in records:
        doc = json.loads(record.value())
        found.setdefault((doc["stream_id"], doc["seq"]), []).append(doc)
    return found


def tiny_model(path, layout="NCHW"):
    """A stand-in for 'a model a user brings': mean colour per image, dynamic batch."""
    shape = ["batch", 3, 16, 16] if layout == "NCHW" else ["batch", 16, 16, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images", "axes"], ["mean_colour"], keepdims=0)],
        "mean_colour",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("mean_colour", TensorProto.FLOAT, ["batch", 3])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], axes)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def process_tree(pid: int) -> list[int]:
    """A process and its descendants: the inference service serves from worker processes under a supervisor,
    so its memory is theirs together."""
    import psutil

    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return [pid]


def serving_processes(pid: int) -> int:
    """How many processes serve (the workers under a supervisor, else the process itself): per-process
    memory bounds multiply by this."""
    return max(1, len(process_tree(pid)) - 1)


def tree_rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The resident memory (VmRSS), or the sum of each process's peak (VmHWM), of a process and its
    descendants, MiB."""
    total = 0.0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith(f"{field}:")) / 1024
        except (OSError, StopIteration):
            continue  # a worker that ended meanwhile
    return total


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory (VmHWM), MiB. psutil reports the current RSS only, not the peak."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def started_client(settings, ready: bool = True):
    """The inference API app in a TestClient, started (lifespan entered) once its model is loaded, or,
    with ready=False, once it is loaded or has given up loading (to test load errors). `client.ops` is
    the ops app's client (/healthz, /readyz, /metrics)."""
    from fastapi.testclient import TestClient

    from inference_service.app import create_app, create_ops_app

    # The API answers only allowed Host names: localhost is one (TestClient's default, testserver, is not).
    client = TestClient(create_app(settings), base_url="http://localhost")
    client.__enter__()
    state = client.app.state.service
    client.ops = TestClient(create_ops_app(state), base_url="http://localhost")
    deadline = time.monotonic() + 30
    while not (state.batcher is not None if ready else state.batcher is not None or state.load_error is not None):
        assert time.monotonic() < deadline, client.ops.get("/readyz").json()
        time.sleep(0.05)
    if ready:
        while client.ops.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.ops.get("/readyz").json()
            time.sleep(0.05)
    return client


class TurnsFatal:
    """A real producer that, after `healthy` produce calls, behaves as librdkafka's idempotent producer
    does after a fatal error (e.g. sequence numbers out of step after a broker restart): it reports
    the error through error_cb and every later produce raises _FATAL."""

    def __init__(self, producer, error_cb, healthy: int):
        self._producer, self._error_cb, self._healthy = producer, error_cb, healthy
        self._error = KafkaError(KafkaError._FATAL, "injected: sequence desynchronization", fatal=True)

    def produce(self, *args, **kwargs):
        if self._healthy <= 0:
            raise KafkaException(self._error)
        self._healthy -= 1
        return self._producer.produce(*args, **kwargs)

    def poll(self, timeout=0):
        if self._healthy <= 0:
            self._error_cb(self._error)
        return self._producer.poll(timeout)

    def __getattr__(self, name):  # flush, purge: the real producer's
        return getattr(self._producer, name)


def turn_fatal_after(producers, healthy: int) -> None:
    """Make a service's current producer (a vidpipe.kafka.ReplaceableProducer's) turn fatal after `healthy`
    produces; the service's replacement is a real producer again (producers.replace)."""
    producers.current = TurnsFatal(producers.current, producers.note_error, healthy)
