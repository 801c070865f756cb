"""A ConsumerWorker with its Kafka edges replaced, for unit tests of what it decides: records go in through
_start_batch, deliveries come back when the test says so, commits are recorded. Inference goes over real
HTTP to a stand-in endpoint (or any client given), the archive to a real folder."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from consumer_service.archive import Archiver
from consumer_service.inference_client import InferenceClient
from consumer_service.reference import REFERENCE_JPEG
from consumer_service.settings import ConsumerSettings
from consumer_service.worker import ConsumerWorker
from vidpipe.contract import FrameMeta, decode_batch
from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings
from vidpipe.storage import LocalStorage
from vidpipe.topics import TopicSettings

FRAMES_TOPIC = "frames"


class Record:
    """A consumed frame record, as confluent-kafka's Message answers."""

    def __init__(self, offset: int, value: bytes = REFERENCE_JPEG, headers: list | None = None, partition: int = 0):
        self._offset, self._value, self._partition = offset, value, partition
        meta = FrameMeta("cam", offset, time.time_ns() // 1000, 64, 64, epoch=1)
        self._headers = meta.headers() if headers is None else headers

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"cam"

    def headers(self) -> list:
        return self._headers

    def topic(self) -> str:
        return FRAMES_TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


class FakeProducer:
    """Takes records and holds their delivery callbacks until deliver() says how each went."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._callbacks: list[Callable] = []
        self.raise_on_produce: Exception | None = None

    def produce(self, topic: str, key=None, value=None, headers=None, on_delivery=None) -> None:
        if self.raise_on_produce is not None:
            raise self.raise_on_produce
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": headers})
        self._callbacks.append(on_delivery)

    def deliver(self, error=None) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(error, None)
        return len(callbacks)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return len(self._callbacks)


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []
        self.seeks: list[tuple[str, int, int]] = []

    def commit(self, offsets, asynchronous: bool = False) -> None:
        self.commits.append({(o.topic, o.partition): o.offset for o in offsets})

    def seek(self, partition) -> None:
        self.seeks.append((partition.topic, partition.partition, partition.offset))

    def assignment(self) -> list:
        return []

    def close(self) -> None:
        pass


def make_worker(tmp_path: Path, inference_url: str, client: Any = None, **settings: Any) -> ConsumerWorker:
    config = ConsumerSettings(
        inference_url=inference_url,
        archive_uri=str(tmp_path / "archive"),
        health_port=0,
        **{"retry_initial_s": 0.05, "retry_max_s": 0.2, "shutdown_timeout_s": 0, **settings},
    )
    topics = TopicSettings(frames=FRAMES_TOPIC, results="results", dead_letter="dlq")
    registry = CollectorRegistry()
    worker = ConsumerWorker(
        config,
        KafkaSettings(bootstrap="127.0.0.1:9"),  # never contacted: both clients are replaced below
        topics,
        archiver=Archiver(LocalStorage(tmp_path / "archive"), 2, True),
        client=client or InferenceClient(inference_url, 5),
        registry=registry,
        heartbeat=Heartbeat(stale_after_s=60),
    )
    worker.registry = registry
    worker.consumer.close()
    worker.consumer = FakeConsumer()
    worker.producers.current = FakeProducer()
    worker._ledger.assign([(FRAMES_TOPIC, 0), (FRAMES_TOPIC, 1)])
    return worker


def advance_until(worker: ConsumerWorker, done: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not get there in time")
        worker._advance()
        time.sleep(0.01)


def metric(worker: ConsumerWorker, name: str, **labels: str) -> float:
    return worker.registry.get_sample_value(name, labels) or 0.0


class StandIn:
    """A real HTTP server answering the batch endpoint: `mode` says how (ok, a status for every request,
    or per-item errors for some images); every request's image count is kept."""

    def __init__(self) -> None:
        self.mode: str | int = "ok"
        self.refuse_items: set[bytes] = set()
        self.requests: list[int] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                images = [bytes(i) for i in decode_batch(body, 1024)]
                with stand_in.lock:
                    stand_in.requests.append(len(images))
                    mode = stand_in.mode
                if isinstance(mode, int):
                    status, answer = mode, {"error": {"code": "refused", "message": f"status {mode}"}}
                else:
                    status = 200
                    results = [
                        {"index": i, "error": {"code": "not_a_jpeg", "message": "cannot decode"}}
                        if image in stand_in.refuse_items
                        else {"index": i, "detections": [], "model_ms": 1.0}
                        for i, image in enumerate(images)
                    ]
                    answer = {"model_name": "stand-in", "model_version": "1", "results": results}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self) -> StandIn:
        self.mode, self.refuse_items, self.requests = "ok", set(), []
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
