"""python -m consumer_service: run the consumer group member with CONSUMER_*, KAFKA_*, TOPICS_* settings."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from prometheus_client import CollectorRegistry

from vidpipe import tracing
from vidpipe.config import ConfigurationError, load_settings
from vidpipe.health import Heartbeat, serve_health
from vidpipe.kafka import KafkaSettings
from vidpipe.logs import configure_logging
from vidpipe.secrets import SecretError, resolve_secret
from vidpipe.storage import open_storage
from vidpipe.topics import TopicSettings, ensure

from .archive import Archiver
from .inference_client import InferenceClient
from .settings import ConsumerSettings
from .worker import ConsumerWorker

TOKEN = "CONSUMER_INFERENCE_TOKEN"


def inference_token(settings: ConsumerSettings, client: object = None) -> str | None:
    """The API token from CONSUMER_INFERENCE_TOKEN, _FILE or _SECRET_ARN (or None), or exit 2 naming the
    variable whose secret cannot be read. The value itself is never logged."""
    value = settings.inference_token.get_secret_value() if settings.inference_token else None
    try:
        return resolve_secret(
            TOKEN,
            value,
            settings.inference_token_file,
            settings.inference_token_secret_arn,
            json_key="token",
            client=client,
        )
    except SecretError as exc:
        message = str(exc)
        if TOKEN not in message:  # the ARN's errors name the secret, not the setting
            message = f"{TOKEN}_SECRET_ARN: {message}"
        print(f"invalid configuration:\n  {message}", file=sys.stderr)
        raise ConfigurationError(2) from None


def main() -> None:
    settings = load_settings(ConsumerSettings)
    kafka = load_settings(KafkaSettings)
    topics = load_settings(TopicSettings)
    configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("consumer_service")
    tracing.setup("consumer-service")

    token = inference_token(settings)
    if not token:
        log.info("sending no API token to inference (%s, _FILE, _SECRET_ARN unset)", TOKEN)
    ensure(kafka, topics)
    registry = CollectorRegistry()
    heartbeat = Heartbeat(stale_after_s=max(60.0, settings.retry_max_s * 3))
    worker = ConsumerWorker(
        settings,
        kafka,
        topics,
        archiver=Archiver(open_storage(settings.archive_uri), settings.archive_workers, settings.archive_frames),
        client=InferenceClient(str(settings.inference_url), settings.inference_timeout_s, token),
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
