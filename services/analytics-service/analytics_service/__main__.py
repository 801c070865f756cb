"""python -m analytics_service (or `analytics-service`): the worker and the HTTP edge in one process,
with ANALYTICS_*, KAFKA_* and TOPICS_* settings. Exit codes: 0 stopped (SIGTERM), 1 the worker failed,
2 bad configuration (a variable or the streams file, named)."""

from __future__ import annotations

import logging
import signal
import sys

import uvicorn

from vidpipe.config import load_settings
from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings
from vidpipe.storage import open_storage
from vidpipe.topics import TopicSettings, ensure

from .app import ServiceState, create_app
from .engine import Analytics
from .metrics import AnalyticsMetrics
from .settings import AnalyticsSettings, load_analytics_config
from .view import LiveView
from .worker import AnalyticsWorker


def main() -> None:
    settings = load_settings(AnalyticsSettings)
    kafka = load_settings(KafkaSettings)
    topics = load_settings(TopicSettings)
    config = load_analytics_config(settings)  # exit 2 naming the key, before anything connects
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("analytics_service")

    ensure(kafka, topics)
    metrics = AnalyticsMetrics()
    view = LiveView(config, settings.live_window)
    heartbeat = Heartbeat(stale_after_s=max(60.0, settings.retry_max_s * 3))
    worker = AnalyticsWorker(
        settings, kafka, topics, Analytics(config, settings.tracker()), view, metrics, heartbeat=heartbeat
    )
    state = ServiceState(
        view=view,
        metrics=metrics,
        heartbeat=heartbeat,
        storage=open_storage(settings.archive_uri) if settings.archive_uri else None,
        worker=worker,
        join_timeout_s=settings.shutdown_timeout_s + 20,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(state),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
            access_log=False,
        )
    )

    def worker_exited() -> None:
        if not worker.stopping:  # it died on its own: stop serving, exit 1 (restarted)
            server.should_exit = True

    state.on_worker_exit = worker_exited
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the handler it found
    # installed: make that handler report the graceful stop as success (exit 0).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info(
        "analyzing %s as group %s from %s; events to %s; %d streams with lines or zones; live view on port %d",
        topics.results,
        settings.group_id,
        kafka.bootstrap,
        topics.events,
        len(config.streams),
        settings.port,
    )
    server.run()
    if state.worker_error is not None:
        log.error("exiting: %s", state.worker_error)
        sys.exit(1)


if __name__ == "__main__":
    main()
