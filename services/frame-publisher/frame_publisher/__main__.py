"""python -m frame_publisher --source VIDEO|rtsp://...|0|FOLDER [options]
   python -m frame_publisher --registry: carry a share of the stream registry's streams (registry_mode.py)

Every option can also be set as a PUBLISHER_* variable; KAFKA_* and TOPICS_* configure the broker.
Instead of a source: PUBLISHER_SOURCE_FILE (--source-file) reads it from a file (a mounted Kubernetes
Secret), PUBLISHER_SOURCE_SECRET_ARN from AWS Secrets Manager.
Exit codes: 0 done, 1 source error, 2 configuration error, 3 frames not delivered.
Credentials in a source URL (userinfo, query values, path parameters) are never logged, published or
written out.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

from vidpipe import tracing
from vidpipe.config import load_settings
from vidpipe.contract import check_stream_id
from vidpipe.kafka import KafkaSettings
from vidpipe.logs import configure_logging
from vidpipe.redact import Redactor, StderrScrubber, redact_url
from vidpipe.topics import TopicSettings, ensure

from .publisher import FramePublisher, PublishSummary
from .settings import Mode, PublisherSettings
from .source_secret import SourceSecretError, read_source_file, read_source_secret
from .sources import SourceError, default_stream_id, open_source


class _RedactingFilter(logging.Filter):
    """Every log record's message goes through the redactor (also when fd scrubbing is off)."""

    def __init__(self, redact: Redactor):
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_SOURCE_SETTINGS = "PUBLISHER_SOURCE (--source), PUBLISHER_SOURCE_FILE (--source-file) and PUBLISHER_SOURCE_SECRET_ARN"


def resolve_source(settings: PublisherSettings) -> str:
    """The source URI or path: PUBLISHER_SOURCE, the file PUBLISHER_SOURCE_FILE names, or the secret
    PUBLISHER_SOURCE_SECRET_ARN names; exactly one of the three.

    Raises ValueError with a message for the operator (never containing the source itself).
    """
    given = [
        name
        for name, value in (
            ("PUBLISHER_SOURCE", settings.source),
            ("PUBLISHER_SOURCE_FILE", settings.source_file),
            ("PUBLISHER_SOURCE_SECRET_ARN", settings.source_secret_arn),
        )
        if value
    ]
    if len(given) > 1:
        raise ValueError(f"set exactly one of {_SOURCE_SETTINGS}; {' and '.join(given)} are all set")
    if settings.source_file:
        try:
            return read_source_file(settings.source_file)
        except SourceSecretError as exc:
            raise ValueError(str(exc)) from None
    if settings.source_secret_arn:
        try:
            return read_source_secret(settings.source_secret_arn)
        except SourceSecretError as exc:
            raise ValueError(f"PUBLISHER_SOURCE_SECRET_ARN: {exc}") from None
    if not settings.source:
        raise ValueError(f"PUBLISHER_SOURCE: is required but not set (set exactly one of {_SOURCE_SETTINGS})")
    return settings.source


def resolve_stream_id(settings: PublisherSettings, uri: str) -> str:
    """--stream-id (already checked by the settings), else the default derived from the source, checked
    against the same contract rule; an invalid default is refused, never rewritten."""
    if settings.stream_id:
        return settings.stream_id
    derived = default_stream_id(uri)
    try:
        return check_stream_id(derived)
    except ValueError as exc:
        raise ValueError(
            f"no stream id given and the one derived from the source {redact_url(uri)} is not valid ({exc}); "
            "set PUBLISHER_STREAM_ID (--stream-id)"
        ) from None


def parse_args(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="frame_publisher", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add(
        "--registry",
        dest="mode",
        action="store_const",
        const="registry",
        help="join the publisher group and carry a share of the registry's streams (PUBLISHER_MODE=registry)",
    )
    add("--group-id", help="with --registry: the publishers' consumer group")
    add("--sources-dir", help="with --registry: where secret:<key> sources are read (the mounted camera Secret)")
    add("--source", help="video file, rtsp:// URL, webcam index (0 or webcam:0) or image folder")
    add("--source-file", help="a file holding the source (a mounted Secret): the URL, or JSON with 'source'")
    add("--stream-id")
    add("--target-fps", type=float)
    add("--max-frames", type=int)
    add("--loop", action="store_true", default=None)
    add("--resize", help="WIDTHxHEIGHT or WIDTH")
    add("--jpeg-quality", type=int)
    add("--pace", choices=["source", "fast"])
    add("--speed", type=float, help="with --pace source: play at this multiple of the source rate")
    add("--start-seq", type=int)
    add("--epoch", type=int, help="this run's epoch (frame identity with seq); default: the start time in µs")
    add("--live-buffer", type=int)
    add("--progress", action=argparse.BooleanOptionalAction, default=None)
    add("--summary-file")
    add("--health-port", type=int)
    args = vars(parser.parse_args(argv))
    return {k: v for k, v in args.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    overrides = parse_args(argv)
    settings = load_settings(PublisherSettings, **overrides)
    kafka = load_settings(KafkaSettings)
    topics = load_settings(TopicSettings)
    configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("frame_publisher")
    tracing.setup("frame-publisher", settings.trace_sample_ratio)
    if settings.mode is Mode.REGISTRY:
        return _registry(settings, kafka, topics)
    try:
        uri = resolve_source(settings)
    except ValueError as exc:
        print(f"invalid configuration:\n  {exc}", file=sys.stderr)
        return 2
    redact = Redactor(uri)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_RedactingFilter(redact))
    # Native code (OpenCV, FFmpeg, librdkafka) writes to the descriptors directly: scrub them too.
    scrubber = StderrScrubber(redact).start() if redact.needed else None
    try:
        return _run(settings, kafka, topics, uri, redact, log)
    except Exception:  # an unexpected error: its traceback may quote the source (OpenCV does)
        print(redact(traceback.format_exc()), file=sys.stderr)
        return 1
    finally:
        if scrubber is not None:
            scrubber.stop()


def _registry(settings: PublisherSettings, kafka: KafkaSettings, topics: TopicSettings) -> int:
    from .registry_mode import run_registry
    from .stream_runner import SourceRedactor

    redact = SourceRedactor()  # learns each source's secret parts as streams come
    for handler in logging.getLogger().handlers:
        handler.addFilter(_RedactingFilter(redact))
    scrubber = StderrScrubber(redact).start()
    try:
        return run_registry(settings, kafka, topics, redact)
    except Exception:
        print(redact(traceback.format_exc()), file=sys.stderr)
        return 1
    finally:
        scrubber.stop()


def _run(
    settings: PublisherSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    uri: str,
    redact: Redactor,
    log: logging.Logger,
) -> int:
    try:
        stream_id = resolve_stream_id(settings, uri)
    except ValueError as exc:
        print(f"invalid configuration:\n  {redact(str(exc))}", file=sys.stderr)
        return 2
    stop = threading.Event()
    try:
        source = open_source(
            uri, settings.loop, stop, settings.target_fps, settings.reconnect_initial_s, settings.reconnect_max_s
        )
    except SourceError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping capture and flushing pending frames", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ensure(kafka, topics)
    heartbeat = None
    if settings.health_port:
        from prometheus_client import CollectorRegistry

        from vidpipe.health import Heartbeat, serve_health

        heartbeat = Heartbeat(stale_after_s=60)
        heartbeat.ready = True
    publisher = FramePublisher(settings, kafka, topics.frames, stop, heartbeat=heartbeat)
    if heartbeat is not None:
        from .metrics import PublisherCollector

        registry = CollectorRegistry()
        registry.register(PublisherCollector(lambda: publisher.summary, lambda: getattr(source, "reconnects", 0)))
        serve_health(
            settings.health_port,
            heartbeat,
            registry,
            details=lambda: publisher.summary.as_dict() if publisher.summary else {},
        )

    progress = None
    show_progress = settings.progress if settings.progress is not None else sys.stderr.isatty()
    if show_progress and not source.live:
        from tqdm import tqdm

        total = source.frame_count
        if total and settings.max_frames:
            total = min(total, settings.max_frames)
        progress = tqdm(total=None if settings.loop else total, unit="frame", desc=source.name)
    summary: PublishSummary | None
    try:
        summary = publisher.run(source, progress, stream_id=stream_id, source_label=redact_url(uri))
    except SourceError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        summary = publisher.summary
        code = 1
    else:
        code = 3 if summary.frames_failed else 0
    finally:
        if progress is not None:
            progress.close()
    if settings.summary_file and summary is not None:
        with open(settings.summary_file, "w") as handle:
            json.dump(summary.as_dict(), handle, indent=2)
    if summary is not None:
        log.info(
            "published %d frames of %s as stream %s (%d delivered, %d dropped, %d failed) at %.1f fps",
            summary.frames_published,
            summary.source,
            summary.stream_id,
            summary.frames_delivered,
            summary.frames_dropped,
            summary.frames_failed,
            summary.fps,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
