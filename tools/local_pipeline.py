"""Run the pipeline's services as real local processes: shared by `make demo`, tests and benchmarks."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
DEFAULT_MODEL = CACHE / "models" / "yolov4-tiny.onnx"
SAMPLE_VIDEO = CACHE / "media" / "bikes.mp4"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**variables: str) -> dict[str, str]:
    """The current environment plus the given variables (the services are installed packages)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in variables.items()})
    return env


@dataclass
class ServiceProcess:
    """A service started as `python -m module`, logging to a file, stopped with SIGTERM."""

    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", self.module, *self.args], env=self.env, cwd=ROOT,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready at {url} after {timeout_s:.0f}s:\n{self.log_tail()}")

    def signal(self, signum: int) -> None:
        if self.running:
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def inference_process(port: int, log_dir: Path, model: Path = DEFAULT_MODEL, **extra: str) -> ServiceProcess:
    env = service_env(INFERENCE_MODEL_URI=str(model), INFERENCE_PORT=str(port), INFERENCE_HOST="127.0.0.1", **extra)
    return ServiceProcess("inference", "inference_service", env, log_dir / "inference.log")


def consumer_process(bootstrap: str, inference_url: str, archive_uri: str, log_dir: Path, name: str = "consumer",
                     **extra: str) -> ServiceProcess:
    env = service_env(KAFKA_BOOTSTRAP=bootstrap, CONSUMER_INFERENCE_URL=inference_url, CONSUMER_ARCHIVE_URI=archive_uri,
                      CONSUMER_HEALTH_PORT=str(free_port()), **extra)
    return ServiceProcess(name, "consumer_service", env, log_dir / f"{name}.log")


def publisher_process(bootstrap: str, source: Path | str, log_dir: Path, args: list[str], **extra: str) -> ServiceProcess:
    env = service_env(KAFKA_BOOTSTRAP=bootstrap, **extra)
    return ServiceProcess("publisher", "frame_publisher", env, log_dir / "publisher.log", ["--source", str(source), *args])


def consumer_health_url(process: ServiceProcess) -> str:
    return f"http://127.0.0.1:{process.env['CONSUMER_HEALTH_PORT']}/readyz"


class ResultCollector:
    """Reads the results topic with its own group and keeps, per frame, the first result seen."""

    def __init__(self, bootstrap: str, results_topic: str, stream_ids: set[str] | None = None):
        from confluent_kafka import Consumer

        from vidpipe.kafka import KafkaSettings, consumer_config

        # KAFKA_AUTH / KAFKA_TLS from the environment apply, so this also reads MSK.
        settings = KafkaSettings(bootstrap=bootstrap)
        self.consumer = Consumer(consumer_config(settings, f"vidpipe-collector-{os.getpid()}-{time.time_ns()}"))
        self.consumer.subscribe([results_topic])
        self.stream_ids = stream_ids
        self.results: dict[tuple[str, int], dict] = {}
        self.received_us: dict[tuple[str, int], int] = {}
        self.duplicates = 0

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            # consume() waits out its whole timeout unless the batch fills: keep it short, so the
            # receive time measured here is the time the result became visible.
            for message in self.consumer.consume(500, timeout=min(left, 0.02)):
                if message.error():
                    continue
                now_us = time.time_ns() // 1000
                doc = json.loads(message.value())
                if self.stream_ids and doc["stream_id"] not in self.stream_ids:
                    continue
                key = (doc["stream_id"], doc["seq"])
                if key in self.results:
                    self.duplicates += 1
                    continue
                self.results[key] = doc
                self.received_us[key] = now_us

    def wait_for(self, expected: set[tuple[str, int]], timeout_s: float, alive=lambda: True) -> set[tuple[str, int]]:
        """Poll until every expected frame has a result; returns the ones still missing."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            missing = expected - self.results.keys()
            if not missing:
                return set()
            alive()
            self.poll(0.5)
        return expected - self.results.keys()

    def close(self) -> None:
        self.consumer.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarize(published: int, dropped: int, dead_lettered: int, collector: ResultCollector) -> dict:
    latencies = [(collector.received_us[k] - doc["capture_ts_us"]) / 1000 for k, doc in collector.results.items()]
    first_capture = min((d["capture_ts_us"] for d in collector.results.values()), default=0)
    last_result = max(collector.received_us.values(), default=0)
    span_s = (last_result - first_capture) / 1e6 if collector.results else 0.0
    classes = Counter(det["label"] for doc in collector.results.values() for det in doc["detections"])
    processed = len(collector.results)
    return {
        "frames_published": published,
        "frames_processed": processed,
        "frames_lost": max(0, published - processed - dead_lettered),
        "frames_dropped": dropped,
        "frames_dead_lettered": dead_lettered,
        "duplicate_results": collector.duplicates,
        "fps": round(processed / span_s, 2) if span_s > 0 else 0.0,
        "latency_ms": {f"p{q}": round(percentile(latencies, q), 1) for q in (50, 95, 99)},
        "detections_by_class": dict(classes.most_common()),
    }
