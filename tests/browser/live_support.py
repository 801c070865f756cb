"""What the live view's browser tests share: Chromium from Debian (driven by Playwright), and a feeder that
does what the consumer would for a stream: archive a frame, then publish its result (a box walking across
the frame, again and again), ten times per second.

The frames are real JPEGs from the sample video when set-up fetched it, drawn ones otherwise. Each test
gives its service its own topics, the stream registry's included: a registry another test or a demo
fills on the same broker must not decide this service's lines and zones.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Producer

from tests.analytics_support import PASSAGE_FRAMES, analytics_env, analytics_topics, result_doc, walking_box
from tests.fixtures.pipeline import missing_setup
from tests.helpers import video_jpegs
from tools.harness.processes import ServiceProcess, analytics_process, free_port
from tools.paths import ROOT, SAMPLE_VIDEO
from vidpipe.contract import encode_result
from vidpipe.kafka import KafkaSettings, producer_config
from vidpipe.storage import LocalStorage, frame_key

ARTEFACTS = ROOT / "out" / "test-artefacts"
FEED_EVERY_S = 0.1
WAIT_MS = 60_000  # bounds a hang only: nothing asserts how fast the page is


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing_setup("Chromium is missing: run `make browser-deps` (make test does it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing_setup("playwright is not installed: run `make venv` (make test does it)")
    assert path is not None
    return path


def frames() -> list[bytes]:
    """JPEGs to archive: the sample video's when set-up fetched it, else drawn ones (same size)."""
    if SAMPLE_VIDEO.exists():
        found = video_jpegs(SAMPLE_VIDEO, PASSAGE_FRAMES * 2, every=2)
        if found:
            return found
    drawn = []
    for k in range(PASSAGE_FRAMES):
        image = np.full((272, 640, 3), (40 + 4 * k, 90, 140), np.uint8)
        cv2.putText(image, f"frame {k}", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        drawn.append(cv2.imencode(".jpg", image)[1].tobytes())
    return drawn


def feed(kafka: KafkaSettings, topic: str, archive: LocalStorage, stream: str, stop: threading.Event) -> None:
    """What the consumer would do, at 10 frames per second: archive the frame, then publish its result."""
    jpegs = frames()
    height, width = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
    producer = Producer(producer_config(kafka))
    seq = 0
    while not stop.is_set():
        capture_us = time.time_ns() // 1000
        archive.put(frame_key(stream, 0, capture_us, seq), jpegs[seq % len(jpegs)])
        doc = result_doc(stream, seq, capture_us, [walking_box(seq, height)], size=(width, height))
        producer.produce(topic, key=stream.encode(), value=encode_result(doc))
        producer.poll(0)
        seq += 1
        stop.wait(FEED_EVERY_S)
    producer.flush(10)


@contextmanager
def streaming_service(
    kafka_bootstrap: str, kafka: KafkaSettings, tmp_path: Path, stream: str, streams_file: Path | None, **env: str
) -> Iterator[ServiceProcess]:
    """An analytics service on its own topics, ready, while a feeder streams `stream` into it."""
    topics = analytics_topics(kafka, partitions=1)  # its registry and status topics are the run's own
    archive = LocalStorage(tmp_path / "archive")
    service = analytics_process(
        kafka_bootstrap,
        tmp_path,
        streams_file,
        str(archive.root),
        free_port(),
        **analytics_env(topics),
        **env,
    ).start()
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(kafka, topics.results, archive, stream, stop), daemon=True)
    try:
        service.wait_ready(timeout_s=90)
        feeder.start()
        yield service
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(30)
        assert service.stop() == 0, service.log_tail()
