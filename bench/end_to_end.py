"""(d) The end-to-end pipeline (publisher, Kafka, consumer, inference service): its capacity draining a
backlog, then live at saturation and at 70% of that capacity (throughput, capture-to-result latency)."""

from __future__ import annotations

import uuid
from pathlib import Path

from bench.common import log
from tools.harness.processes import ServiceProcess, consumer_health_url, consumer_process, publisher_process
from tools.harness.results import ResultCollector, percentile
from tools.paths import SAMPLE_VIDEO


class Pipeline:
    """Consumer + publisher on fresh topics against a running inference server."""

    def __init__(
        self, bootstrap: str, inference_url: str, workdir: Path, name: str, start: bool = True, **consumer_env: str
    ):
        self.bootstrap = bootstrap
        self.workdir = workdir / name
        self.topics = {
            "TOPICS_FRAMES": f"bench-{name}-{uuid.uuid4().hex[:6]}.frames",
            "TOPICS_RESULTS": f"bench-{name}-{uuid.uuid4().hex[:6]}.results",
            "TOPICS_DEAD_LETTER": f"bench-{name}-{uuid.uuid4().hex[:6]}.dlq",
        }
        self.consumer = consumer_process(
            bootstrap,
            inference_url,
            str(self.workdir / "archive"),
            self.workdir,
            CONSUMER_GROUP_ID=f"bench-{name}",
            **self.topics,
            **consumer_env,
        )
        if start:
            self.start_consumer()
        self.collector = ResultCollector(bootstrap, self.topics["TOPICS_RESULTS"])

    def start_consumer(self) -> None:
        self.consumer.start()
        self.consumer.wait_http(consumer_health_url(self.consumer), timeout_s=60)

    def publish(self, *args: str) -> ServiceProcess:
        return publisher_process(
            self.bootstrap,
            SAMPLE_VIDEO,
            self.workdir,
            ["--stream-id", "bench", "--loop", "--summary-file", str(self.workdir / "pub.json"), *args],
            **self.topics,
        ).start()

    def measure(self, frames: int, timeout_s: float) -> dict:
        self.collector.wait_for({("bench", s) for s in range(frames)}, timeout_s)
        results = self.collector.results
        received = sorted(self.collector.received_us.values())
        latencies = [(self.collector.received_us[k] - d["capture_ts_us"]) / 1000 for k, d in results.items()]
        # Throughput over the middle of the run, past start-up and before the tail drains.
        lo, hi = int(len(received) * 0.1), int(len(received) * 0.9)
        span = (received[hi - 1] - received[lo]) / 1e6 if hi - 1 > lo else 0
        return {
            "frames": len(results),
            "fps": round((hi - 1 - lo) / span, 2) if span else 0.0,
            "latency_ms": {f"p{q}": round(percentile(latencies, q), 1) for q in (50, 95, 99)},
        }

    def close(self) -> None:
        self.collector.close()
        self.consumer.stop()


def end_to_end_capacity(bootstrap: str, inference_url: str, workdir: Path, frames: int = 1000) -> dict:
    """A backlog of frames drained by consumer + inference, with the publisher done, so its JPEG
    encoding (on a camera-side machine in production) does not share these 2 cores."""
    drain = Pipeline(bootstrap, inference_url, workdir, "drain", start=False)
    publisher = drain.publish("--pace", "fast", "--max-frames", str(frames))
    publisher.process.wait(120)
    drain.start_consumer()
    capacity = drain.measure(frames, timeout_s=300)
    drain.close()
    capacity.pop("latency_ms")  # queueing time of the backlog, not the pipeline's
    log(f"end-to-end capacity (backlog drained): {capacity}")
    return capacity


def end_to_end_live(bootstrap: str, inference_url: str, workdir: Path, seconds: float, capacity_fps: float) -> dict:
    # Saturation, live: the publisher streams as fast as it can on the same cores.
    frames = 1000
    sat = Pipeline(bootstrap, inference_url, workdir, "saturation")
    publisher = sat.publish("--pace", "fast", "--max-frames", str(frames))
    saturation = sat.measure(frames, timeout_s=300)
    publisher.stop()
    sat.close()
    log(f"end-to-end at saturation: {saturation}")

    target = 0.7 * capacity_fps
    frames = max(100, int(target * seconds))
    partial = Pipeline(bootstrap, inference_url, workdir, "seventy")
    publisher = partial.publish("--pace", "source", "--speed", f"{target / 25:.3f}", "--max-frames", str(frames))
    at_70 = partial.measure(frames, timeout_s=seconds * 3 + 60)
    publisher.stop()
    partial.close()
    at_70["offered_fps"] = round(target, 2)
    log(f"end-to-end at 70%: {at_70}")
    return {"saturation": saturation, "at_70_percent": at_70}
