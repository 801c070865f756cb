"""`python -m frame_publisher --registry` (PUBLISHER_MODE=registry): this process joins the publisher group and
carries its share of the registry's enabled streams until SIGTERM (group.py says how they are shared)."""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType

from vidpipe.health import Heartbeat, serve_health
from vidpipe.kafka import KafkaSettings
from vidpipe.topics import TopicSettings, ensure

from .group import PublisherGroup
from .settings import PublisherSettings
from .stream_runner import SourceRedactor

log = logging.getLogger("frame_publisher")


def run_registry(
    settings: PublisherSettings, kafka: KafkaSettings, topics: TopicSettings, redactor: SourceRedactor
) -> int:
    pod = settings.pod_name or socket.gethostname()
    ignored = [
        name
        for name, value in (
            ("PUBLISHER_SOURCE", settings.source),
            ("PUBLISHER_SOURCE_FILE", settings.source_file),
            ("PUBLISHER_SOURCE_SECRET_ARN", settings.source_secret_arn),
            ("PUBLISHER_STREAM_ID", settings.stream_id),
        )
        if value
    ]
    if ignored:
        log.warning("registry mode: %s ignored (the registry defines the streams)", ", ".join(ignored))
    ensure(kafka, topics)
    heartbeat = Heartbeat(stale_after_s=60)
    group = PublisherGroup(settings, kafka, topics, heartbeat, redactor, pod)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the streams, flushing their frames, leaving the group", signum)
        group.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.health_port:
        from prometheus_client import CollectorRegistry

        from .metrics import GroupCollector

        registry = CollectorRegistry()
        registry.register(GroupCollector(lambda: list(group.runners.values())))
        serve_health(settings.health_port, heartbeat, registry, details=group.details)
    log.info(
        "publisher %s: carrying streams of %s as a member of group %s (session timeout %d ms)",
        pod,
        topics.streams,
        settings.group_id,
        settings.session_timeout_ms,
    )
    group.run()
    return 0
