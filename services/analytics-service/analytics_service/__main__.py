"""python -m analytics_service (or `analytics-service`): the worker and the HTTP edge in one process,
with ANALYTICS_*, KAFKA_* and TOPICS_* settings: the live view on ANALYTICS_PORT, /healthz, /readyz and
/metrics on ANALYTICS_OPS_PORT. Exit codes: 0 stopped (SIGTERM), 1 the worker failed, 2 bad
configuration (a variable or the streams file, named)."""

from __future__ import annotations

import logging
import sys

from vidpipe import tracing
from vidpipe.config import ConfigurationError, load_settings
from vidpipe.health import Heartbeat
from vidpipe.http_edge import EdgeServers, api_config, ops_config
from vidpipe.kafka import KafkaSettings
from vidpipe.logs import configure_logging
from vidpipe.secrets import SecretError
from vidpipe.storage import open_storage
from vidpipe.topics import TopicSettings, ensure

from .app import ServiceState, create_app, create_ops_app
from .engine import Analytics
from .metrics import AnalyticsMetrics
from .settings import AnalyticsSettings, load_analytics_config, load_stream_names
from .view import LiveView
from .worker import AnalyticsWorker


def main() -> None:
    settings = load_settings(AnalyticsSettings)
    kafka = load_settings(KafkaSettings)
    topics = load_settings(TopicSettings)
    config = load_analytics_config(settings)  # exit 2 naming the key, before anything connects
    configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("analytics_service")
    tracing.setup("analytics-service")
    try:
        token = settings.resolve_token()
    except (SecretError, ValueError) as exc:
        print(f"invalid configuration:\n  {exc}", file=sys.stderr)
        raise ConfigurationError(2) from None
    streams = load_stream_names(settings)

    ensure(kafka, topics)
    metrics = AnalyticsMetrics()
    view = LiveView(config, settings.live_window)
    heartbeat = Heartbeat(stale_after_s=max(60.0, settings.retry_max_s * 3))
    worker = AnalyticsWorker(
        settings, kafka, topics, Analytics(config, settings.tracker()), view, metrics, heartbeat, streams
    )
    state = ServiceState(
        view=view,
        metrics=metrics,
        heartbeat=heartbeat,
        storage=open_storage(settings.archive_uri) if settings.archive_uri else None,
        worker=worker,
        join_timeout_s=settings.shutdown_timeout_s + 20,
    )
    servers = EdgeServers(
        api_config(create_app(state, settings, token), settings, settings.host, settings.port, settings.log_level,
                   graceful_s=10),
        ops_config(create_ops_app(state), settings, settings.host, settings.ops_port, settings.log_level),
    )  # fmt: skip

    def worker_exited() -> None:
        if not worker.stopping:  # it died on its own: stop serving, exit 1 (restarted)
            servers.stop()

    state.on_worker_exit = worker_exited
    log.info(
        "analyzing %s as group %s from %s; events to %s; %s; %d streams with lines or zones; live view on port %d, "
        "probes and metrics on port %d",
        topics.results,
        settings.group_id,
        kafka.bootstrap,
        topics.events,
        f"only the {len(streams)} streams listed" if streams else f"at most {settings.max_streams} streams",
        len(config.streams),
        settings.port,
        settings.ops_port,
    )
    servers.run()
    if state.worker_error is not None:
        log.error("exiting: %s", state.worker_error)
        sys.exit(1)


if __name__ == "__main__":
    main()
