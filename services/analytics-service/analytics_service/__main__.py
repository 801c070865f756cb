"""python -m analytics_service (or `analytics-service`): the worker and the HTTP edge in one process,
with ANALYTICS_*, KAFKA_* and TOPICS_* settings: the live view and the registry's control API on
ANALYTICS_PORT, /healthz, /readyz and /metrics on ANALYTICS_OPS_PORT. Lines and zones follow the stream
registry (TOPICS_STREAMS) once it holds a stream, the streams file until then (analytics_service.catalog).
Exit codes: 0 stopped (SIGTERM), 1 the worker failed, 2 bad configuration (a variable or the streams
file, named)."""

from __future__ import annotations

import logging
import sys

from vidpipe import tracing
from vidpipe.config import ConfigurationError, load_settings
from vidpipe.health import Heartbeat
from vidpipe.http_edge import EdgeServers, api_config, ops_config
from vidpipe.kafka import KafkaSettings
from vidpipe.logs import configure_logging
from vidpipe.registry_client import RegistryFollower, RegistryWriter
from vidpipe.secrets import SecretError
from vidpipe.storage import open_storage
from vidpipe.topics import TopicSettings, ensure

from .app import ServiceState, create_app, create_ops_app
from .catalog import RegionCatalog
from .control import RegistryControl
from .engine import Analytics
from .metrics import AnalyticsMetrics
from .settings import AnalyticsSettings, load_analytics_config, load_stream_names
from .status import StatusFollower
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
    follower = RegistryFollower(kafka, topics.streams).start() if settings.registry else None
    catalog = RegionCatalog(config, streams, follower)
    metrics = AnalyticsMetrics()
    view = LiveView(catalog, settings.live_window)
    heartbeat = Heartbeat(stale_after_s=max(60.0, settings.retry_max_s * 3))
    worker = AnalyticsWorker(
        settings, kafka, topics, Analytics(catalog, settings.tracker()), view, metrics, heartbeat, catalog
    )
    registry: RegistryControl | None = None
    statuses: StatusFollower | None = None
    if follower is not None:
        statuses = StatusFollower(kafka, topics.streams_status).start()
        writer = RegistryWriter(kafka, topics.streams, settings.registry_timeout_s)
        registry = RegistryControl(follower, writer, catalog, view, statuses.get, settings.registry_timeout_s)
        # Analysis starts with the registry's lines and zones when it can: read it first, for a while.
        if not follower.wait_ready(settings.registry_timeout_s):
            log.warning("the stream registry %s is not read after %.0fs: the streams file's lines and zones "
                        "apply until it is", topics.streams, settings.registry_timeout_s)  # fmt: skip
    state = ServiceState(
        view=view,
        metrics=metrics,
        heartbeat=heartbeat,
        storage=open_storage(settings.archive_uri) if settings.archive_uri else None,
        worker=worker,
        registry=registry,
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
    if catalog.source == "registry":
        regions = f"the stream registry {topics.streams}"
    else:
        regions = f"the streams file {settings.streams_file}" if settings.streams_file else "no streams file"
        if follower is not None:
            regions += f" until the stream registry {topics.streams} holds a stream"
    log.info(
        "analyzing %s as group %s from %s; events to %s; lines and zones from %s; live view on port %d, "
        "probes and metrics on port %d",
        topics.results,
        settings.group_id,
        kafka.bootstrap,
        topics.events,
        regions,
        settings.port,
        settings.ops_port,
    )
    try:
        servers.run()
    finally:
        for follows in (statuses, follower):
            if follows is not None:
                follows.stop()
    if state.worker_error is not None:
        log.error("exiting: %s", state.worker_error)
        sys.exit(1)


if __name__ == "__main__":
    main()
