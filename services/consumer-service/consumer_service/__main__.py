"""python -m consumer_service: run the consumer group member with CONSUMER_*, KAFKA_*, TOPICS_* settings."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from prometheus_client import CollectorRegistry

from vidpipe.config import load_settings
from vidpipe.health import Heartbeat, serve_health
from vidpipe.kafka import KafkaSettings
from vidpipe.storage import open_storage
from vidpipe.topics import TopicSettings, ensure

from .archive import Archiver
from .inference_client import InferenceClient
from .settings import ConsumerSettings
from .worker import ConsumerWorker


def main() -> None:
    settings = load_settings(ConsumerSettings)
    kafka = load_settings(KafkaSettings)
    topics = load_settings(TopicSettings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("consumer_service")

    ensure(kafka, topics)
    registry = CollectorRegistry()
    heartbeat = Heartbeat(stale_after_s=max(60.0, settings.retry_max_s * 3))
    worker = ConsumerWorker(
        settings,
        kafka,
        topics,
        archiver=Archiver(open_storage(settings.archive_uri), settings.archive_workers, settings.archive_frames),
        client=InferenceClient(str(settings.inference_url), settings.inference_timeout_s),
        registry=registry,
        heartbeat=heartbeat,
    )
    if settings.health_port:
        serve_health(settings.health_port, heartbeat, registry)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, committing and leaving the group", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("consuming %s as group %s from %s", topics.frames, settings.group_id, kafka.bootstrap)
    worker.run()
    log.info(
        "stopped: %d processed, %d dead-lettered, %d stale",
        worker.counts.processed,
        worker.counts.dead_lettered,
        worker.counts.stale,
    )


if __name__ == "__main__":
    main()
