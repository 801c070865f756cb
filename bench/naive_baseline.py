"""(e) The naive design (bench.naive) measured like the pipeline's capacity: one JSON/base64 request per
frame, a consumer that waits for each answer."""

from __future__ import annotations

import uuid
from pathlib import Path

from bench.common import log
from tools.harness.processes import ServiceProcess, free_port, publisher_process, service_env
from tools.harness.results import ResultCollector
from tools.paths import SAMPLE_VIDEO


def naive(bootstrap: str, model: Path, workdir: Path, frames: int) -> dict:
    from vidpipe.kafka import KafkaSettings, ensure_topics
    from vidpipe.topics import TopicSettings

    port = free_port()
    topics = TopicSettings(
        frames=f"bench-naive-{uuid.uuid4().hex[:6]}.frames",
        results=f"bench-naive-{uuid.uuid4().hex[:6]}.results",
        partitions=6,
    )
    ensure_topics(KafkaSettings(bootstrap=bootstrap), topics.specs()[:2])
    env = service_env()
    server = ServiceProcess(
        "naive-server",
        "bench.naive",
        env,
        workdir / "naive-server.log",
        ["serve", "--model", str(model), "--port", str(port)],
    ).start()
    server.wait_http(f"http://127.0.0.1:{port}/docs")
    collector = ResultCollector(bootstrap, topics.results)
    # Measured like the pipeline's capacity: a backlog drained, the publisher done.
    publisher = publisher_process(
        bootstrap,
        SAMPLE_VIDEO,
        workdir,
        ["--stream-id", "bench", "--loop", "--pace", "fast", "--max-frames", str(frames)],
        TOPICS_FRAMES=topics.frames,
    ).start()
    publisher.process.wait(120)
    consumer = ServiceProcess(
        "naive-consumer",
        "bench.naive",
        env,
        workdir / "naive-consumer.log",
        [
            "consume",
            "--bootstrap",
            bootstrap,
            "--frames-topic",
            topics.frames,
            "--results-topic",
            topics.results,
            "--url",
            f"http://127.0.0.1:{port}/infer",
            "--group",
            f"naive-{uuid.uuid4().hex[:6]}",
        ],
    ).start()

    def alive() -> None:
        for process in (server, consumer):
            if not process.running:
                raise RuntimeError(f"{process.name} died:\n{process.log_tail()}")

    collector.wait_for({("bench", s) for s in range(frames)}, timeout_s=300, alive=alive)
    received = sorted(collector.received_us.values())
    lo, hi = int(len(received) * 0.1), int(len(received) * 0.9)
    fps = round((hi - 1 - lo) / ((received[hi - 1] - received[lo]) / 1e6), 2)
    for process in (publisher, consumer, server):
        process.stop()
    collector.close()
    log(f"naive baseline: {fps} frames/s")
    return {"frames": len(received), "fps": fps}
