"""python -m frame_publisher --source VIDEO|rtsp://...|0|FOLDER [options]

Every option can also be set as a PUBLISHER_* variable; KAFKA_* and TOPICS_* configure the broker.
Exit codes: 0 done, 1 source error, 2 configuration error, 3 frames not delivered.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from vidpipe.config import load_settings
from vidpipe.kafka import KafkaSettings
from vidpipe.topics import TopicSettings, ensure

from .publisher import FramePublisher
from .settings import PublisherSettings
from .sources import SourceError, open_source


def parse_args(argv: list[str] | None) -> dict:
    parser = argparse.ArgumentParser(prog="frame_publisher", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--source", help="video file, rtsp:// URL, webcam index (0 or webcam:0) or image folder")
    add("--stream-id")
    add("--target-fps", type=float)
    add("--max-frames", type=int)
    add("--loop", action="store_true", default=None)
    add("--resize", help="WIDTHxHEIGHT or WIDTH")
    add("--jpeg-quality", type=int)
    add("--pace", choices=["source", "fast"])
    add("--speed", type=float, help="with --pace source: play at this multiple of the source rate")
    add("--start-seq", type=int)
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
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("frame_publisher")

    stop = threading.Event()
    try:
        source = open_source(settings.source, settings.loop, stop, settings.target_fps,
                             settings.reconnect_initial_s, settings.reconnect_max_s)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum, _frame):
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
        serve_health(settings.health_port, heartbeat, CollectorRegistry(),
                     details=lambda: publisher.summary.as_dict() if publisher.summary else {})

    progress = None
    show_progress = settings.progress if settings.progress is not None else sys.stderr.isatty()
    if show_progress and not source.live:
        from tqdm import tqdm

        total = source.frame_count
        if total and settings.max_frames:
            total = min(total, settings.max_frames)
        progress = tqdm(total=None if settings.loop else total, unit="frame", desc=source.name)
    try:
        summary = publisher.run(source, progress)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
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
        log.info("published %d frames of %s as stream %s (%d delivered, %d dropped, %d failed) at %.1f fps",
                 summary.frames_published, summary.source, summary.stream_id, summary.frames_delivered,
                 summary.frames_dropped, summary.frames_failed, summary.fps)
    return code


if __name__ == "__main__":
    sys.exit(main())
