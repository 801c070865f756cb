"""`make demo`: stream the sample video through a real broker to the real model, track and count, report.

Starts a local Kafka broker (unless KAFKA_BOOTSTRAP names one), the inference service, the consumer and
the analytics service (with a streams configuration it writes: one line and one zone on the demo's
stream), prints the live view's URL (and that of a local Prometheus scraping every service, when
`make prometheus-deps` installed it), publishes bikes.mp4 in real time sampled at 10 frames/s (the rate
the deployed cameras are sampled at; --fps or DEMO_FPS: another rate, or `source` for every frame), waits
until every published frame has a result and the analytics events are in, then writes out/summary.json
(with the sampling, the capture-to-result latency and the line and zone counts) and out/annotated.mp4 (at
the sampled rate, so it plays at real speed), and stops everything it started.

The annotated video is rendered from the archived frames and the results replayed, in seq order,
through the analytics engine the service runs (same code, same input, same tracks); the summary reports
the counts from the service's events beside the replay's, which must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import yaml

from analytics_service.engine import TrackerSettings
from tools.analytics_render import (
    EventCollector,
    counts_from_events,
    render_video,
    replay,
    replayed_events,
    track_continuity,
)
from tools.harness.processes import (
    ServiceProcess,
    analytics_process,
    consumer_health_url,
    consumer_process,
    free_port,
    inference_process,
    publisher_process,
)
from tools.harness.results import ResultCollector, summarize
from tools.paths import CACHE, DEFAULT_MODEL, ROOT, SAMPLE_VIDEO
from tools.prometheus import start_beside
from vidpipe.analytics_config import AnalyticsConfig, load_streams_file
from vidpipe.storage import LocalStorage

# Chosen on bikes.mp4 (640x272): in its street scene (frames ~137-190) cars drive left to right behind a
# fence, their boxes' bottoms at y 150-180 px. The line stands across the road at x=384 px, drawn
# upwards, so "in" (left-hand to right-hand side walking from start to end) is driving to the right; the
# zone is the stretch of road the line cuts. Coordinates are fractions of the frame.
DEMO_LINES = [{"name": "street", "start": [0.6, 0.85], "end": [0.6, 0.45]}]
DEMO_ZONES = [{"name": "road", "polygon": [[0.5, 0.52], [0.72, 0.52], [0.72, 0.7], [0.5, 0.7]]}]

# The rate cameras are sampled at deployed (cdk8s_app/settings.yaml) and capacity is planned for; at the
# video's own 25 frames/s a 2-vCPU machine (~20 frames/s) falls behind and latency grows with the backlog.
DEFAULT_FPS = "10"


def sample_rate(value: str) -> float | None:
    """--fps / DEMO_FPS: frames per second to sample the video at, or None for `source` (every frame)."""
    if value.strip().lower() == "source":
        return None
    try:
        fps = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number of frames per second nor 'source'") from None
    if not 0 < fps <= 1000:
        raise argparse.ArgumentTypeError(f"{value!r}: frames per second must be above 0 and at most 1000")
    return fps


def tracker_frame_rate(requested: float | None, source_fps: float) -> int:
    """The tracker's frame_rate for the stream as sampled. ByteTrack keeps a lost track for a number of
    frames scaled by it: left at 25 for a 10 frames/s stream, a car lost in the zone would linger 2.5 s
    rather than 1 s (past the end of bikes.mp4, still "inside" in the counts)."""
    rate = source_fps if requested is None else min(requested, source_fps)
    return max(1, round(rate))


def sampling(published: dict[str, Any], source_fps: float, requested: float | None) -> dict[str, Any]:
    """How the video was sampled, from the publisher's summary: frames read and sent, and the rate sent at
    (frames sent over the video's duration; the rate the annotated video is written at)."""
    read = published["frames_read"]
    duration_s = read / source_fps
    sent = published["frames_published"]
    return {
        "requested_fps": "source" if requested is None else requested,
        "source_fps": round(source_fps, 2),
        "fps": round(sent / duration_s, 2) if duration_s > 0 else round(source_fps, 2),
        "frames_read": read,
        "frames_sampled": sent,
        "frames_sampled_out": published["frames_sampled_out"],
    }


def write_streams_file(path: Path, stream_id: str) -> AnalyticsConfig:
    """The demo's streams configuration, read back the way the service reads it (validated)."""
    document = {
        "streams": [{"name": stream_id}],
        "analytics": {stream_id: {"lines": DEMO_LINES, "zones": DEMO_ZONES}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=None))
    return load_streams_file(path)


def start_analytics(
    stack: ExitStack, bootstrap: str, logs: Path, streams_file: Path, archive: Path, token: str, **extra: str
) -> str:
    """The analytics service, its live view behind `token`; returns the live view's URL."""
    port = free_port()
    service: ServiceProcess = analytics_process(
        bootstrap, logs, streams_file, str(archive), port, ANALYTICS_API_TOKEN=token, **extra
    )
    service.start()
    stack.callback(service.stop)
    service.wait_ready()
    return f"http://127.0.0.1:{port}/"


def inference_tokens() -> tuple[dict[str, str], dict[str, str]]:
    """(the inference service's, the consumer's) token variables: one fresh token for this run, when the
    consumer can send one (CONSUMER_INFERENCE_TOKEN); none otherwise."""
    from consumer_service.settings import ConsumerSettings

    if "inference_token" not in ConsumerSettings.model_fields:
        return {}, {}
    token = secrets.token_urlsafe(24)
    return {"INFERENCE_API_TOKEN": token}, {"CONSUMER_INFERENCE_TOKEN": token}


def live_view_streams(live_view: str, token: str) -> dict[str, Any]:
    """The live view's API as a client reads it: each stream's frames analyzed, latest seq, rate."""
    request = urllib.request.Request(live_view + "api/streams", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return {s["stream_id"]: s for s in json.load(response)["streams"]}


def format_counts(counts: dict[str, Any] | None) -> list[tuple[str, str]]:
    if counts is None:
        return []

    def labels(by_label: dict[str, int]) -> str:
        return ", ".join(f"{label} {n}" for label, n in by_label.items()) or "-"

    rows = [(f"line {name}", f"in: {labels(c['in'])} | out: {labels(c['out'])}") for name, c in counts["lines"].items()]
    rows += [
        (f"zone {name}", f"entered: {labels(c['entered'])} | inside now: {labels(c['occupancy'])}")
        for name, c in counts["zones"].items()
    ]
    return rows


def print_table(summary: dict) -> None:
    sampled = summary["sampling"]
    rows: list[tuple[str, Any]] = [
        (
            "frames_sampled",
            f"{sampled['frames_sampled']} of {sampled['frames_read']} "
            f"({sampled['fps']} frames/s of the source's {sampled['source_fps']})",
        )
    ]
    rows += [
        (k, summary[k])
        for k in (
            "frames_published",
            "frames_processed",
            "frames_lost",
            "frames_dropped",
            "frames_dead_lettered",
        )
    ]
    # fps: frames processed over the first capture to the last result, the rate the pipeline kept up with.
    rows.append(("fps (effective)", summary["fps"]))
    rows += [(f"latency {k} (ms)", v) for k, v in summary["latency_ms"].items()]
    analytics = summary["analytics"]
    source = "service" if analytics["counts"]["service"] is not None else "replay"
    rows += format_counts(analytics["counts"][source])
    continuity = analytics["track_continuity"]
    rows.append(("car track continuity", continuity["continuity"]))
    if analytics["consistent"] is not None:
        rows.append(("service = replay", analytics["consistent"]))
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in rows))
    top = list(summary["detections_by_class"].items())[:8]
    print("  detections: " + ", ".join(f"{label} {count}" for label, count in top) + "\n")


def start_broker(stack: ExitStack, data_dir: Path) -> str:
    from tools.kafka.broker import LocalBroker

    shutil.rmtree(data_dir, ignore_errors=True)  # a fresh broker makes every run count from zero
    broker = LocalBroker(data_dir=data_dir, port=free_port(), controller_port=free_port())
    broker.start()
    stack.callback(broker.stop)
    broker.wait(timeout=120)
    return broker.bootstrap


def video_fps(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return fps if fps and fps > 0 else 25.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, default=SAMPLE_VIDEO)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--pace", choices=["source", "fast"], default="source")
    parser.add_argument(
        "--fps",
        type=sample_rate,
        default=os.environ.get("DEMO_FPS") or DEFAULT_FPS,
        help=f"frames per second to sample the video at, or 'source' for every frame (default: DEMO_FPS, "
        f"else {DEFAULT_FPS})",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every result")
    parser.add_argument("--events-timeout", type=float, default=60.0, help="seconds to wait for the events")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for path, how in ((args.video, "make sample"), (args.model, "make model")):
        if not path.exists():
            print(f"error: {path} is missing; run `{how}` (or `make demo`, which does all set-up)", file=sys.stderr)
            return 1
    out = args.out
    archive = out / "archive"
    logs = out / "logs"
    shutil.rmtree(archive, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    shutil.rmtree(out / "annotated", ignore_errors=True)  # the per-frame JPEGs of earlier versions
    stream_id = f"{args.video.stem}-{time.strftime('%Y%m%dT%H%M%S')}"
    streams_file = out / "streams.yaml"
    config = write_streams_file(streams_file, stream_id)
    spec = config.for_stream(stream_id)
    source_fps = video_fps(args.video)
    # The service's tracker and the replay's, alike, so their tracks and counts are the same.
    tracker = TrackerSettings(frame_rate=tracker_frame_rate(args.fps, source_fps))

    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        if bootstrap:
            print(f"using the broker at KAFKA_BOOTSTRAP={bootstrap}")
        else:
            print("starting a local Kafka broker (KRaft, one node)...")
            bootstrap = start_broker(stack, CACHE / "demo" / "kafka")
        inference_port = free_port()
        # Fresh tokens each run: the services run as they do deployed, behind their tokens.
        inference_env, consumer_env = inference_tokens()
        live_token = secrets.token_urlsafe(24)
        inference = inference_process(inference_port, logs, args.model, **inference_env).start()
        stack.callback(inference.stop)
        consumer = consumer_process(bootstrap, f"http://127.0.0.1:{inference_port}", str(archive), logs, **consumer_env)
        print("starting the inference service, the consumer and the analytics service...")
        inference.wait_ready()
        consumer.start()
        stack.callback(consumer.stop)
        consumer.wait_http(consumer_health_url(consumer))
        analytics_ops, publisher_ops = free_port(), free_port()
        live_view = start_analytics(
            stack,
            bootstrap,
            logs,
            streams_file,
            archive,
            live_token,
            ANALYTICS_OPS_PORT=str(analytics_ops),
            ANALYTICS_FRAME_RATE=str(tracker.frame_rate),
        )
        prometheus = start_beside(
            stack,
            out / "prometheus",
            {
                "frame-publisher": [f"127.0.0.1:{publisher_ops}"],
                "consumer-service": [f"127.0.0.1:{consumer.env['CONSUMER_HEALTH_PORT']}"],
                "inference-service": [f"127.0.0.1:{inference.env['INFERENCE_OPS_PORT']}"],
                "analytics-service": [f"127.0.0.1:{analytics_ops}"],
            },
        )
        # The link logs the browser in once (a session cookie) and drops the token from the address.
        print(f"live view: {live_view}?token={live_token}  (lines and zones: {streams_file})")
        if prometheus is not None:
            print(f"prometheus: {prometheus.url}/alerts  (the alert rules; /targets: the services it scrapes)")

        from vidpipe.topics import TopicSettings

        topics = TopicSettings()
        collector = ResultCollector(bootstrap, topics.results, {stream_id})
        stack.callback(collector.close)
        events = EventCollector(bootstrap, topics.events, {stream_id})
        stack.callback(events.close)
        summary_file = out / "publisher.json"
        publisher = publisher_process(
            bootstrap,
            args.video,
            logs,
            [
                *("--stream-id", stream_id, "--pace", args.pace, "--summary-file", str(summary_file), "--progress"),
                *("--health-port", str(publisher_ops), "--target-fps", str(args.fps or 0)),  # 0: every frame
            ],
        )
        rate = f"{args.fps:g} frames/s" if args.fps and args.fps < source_fps else f"its own {source_fps:g} frames/s"
        print(f"streaming {args.video.name} as stream {stream_id}, sampled at {rate}...")
        started = time.monotonic()
        publisher.start()
        while publisher.running:
            collector.poll(0.5)
            events.poll(0.01)
        if publisher.process.returncode != 0:
            print(
                f"error: publisher exited with {publisher.process.returncode}:\n{publisher.log_tail()}", file=sys.stderr
            )
            return 1
        published = json.loads(summary_file.read_text())
        expected = {(stream_id, seq) for seq in range(published["first_seq"], published["last_seq"] + 1)}

        def alive():
            for service in (inference, consumer):
                if not service.running:
                    raise RuntimeError(f"{service.name} died:\n{service.log_tail()}")

        missing = collector.wait_for(expected, args.timeout, alive)
        elapsed = time.monotonic() - started

        frames = replay(collector.results.values(), config, tracker)
        replay_events = replayed_events(frames)
        # The service analyzes the same results: wait until it has published as many events as the
        # replay made (more would be redelivered duplicates), or give up and report what came.
        deadline = time.monotonic() + args.events_timeout
        while events.count() < len(replay_events) and time.monotonic() < deadline:
            events.poll(0.5)
        events.poll(1.0)  # anything beyond: duplicates, or events the replay did not make
        service_counts = counts_from_events(events.events[stream_id], spec)
        live = live_view_streams(live_view, live_token).get(stream_id, {})
        replay_counts = frames[-1].counts if frames else counts_from_events([], spec)
        sampled = sampling(published, source_fps, args.fps)
        video = render_video(out / "annotated.mp4", frames, LocalStorage(archive), spec, sampled["fps"])

        summary = summarize(published["frames_published"], published["frames_dropped"], 0, collector)
        summary.update(
            {
                "stream_id": stream_id,
                "source": str(args.video.name),
                "sampling": sampled,
                "elapsed_s": round(elapsed, 2),
                "frames_missing": len(missing),
                "analytics": {
                    "streams_file": str(streams_file),
                    "lines": DEMO_LINES,
                    "zones": DEMO_ZONES,
                    "live_view": live_view,
                    "live_view_frames": live.get("frames"),
                    "tracker_frame_rate": tracker.frame_rate,
                    "counts": {"service": service_counts, "replay": replay_counts},
                    "consistent": service_counts == replay_counts,
                    "events": {
                        "service": events.count(),
                        "replay": len(replay_events),
                    },
                    "track_continuity": track_continuity(frames),
                    "video": {**video, "fps": sampled["fps"]},
                },
            }
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print_table(summary)
        print(
            f"wrote {out / 'summary.json'}, {out / 'annotated.mp4'} ({video['frames_written']} frames), archive in {archive}"
        )
        problems = []
        if missing:
            problems.append(f"{len(missing)} frames have no result after {args.timeout:.0f}s (see {logs})")
        if video["frames_read_back"] != video["frames_written"]:
            problems.append(f"annotated.mp4 reads back {video['frames_read_back']} of {video['frames_written']} frames")
        if service_counts != replay_counts:
            problems.append(f"the service's counts differ from the replay's (see {out / 'summary.json'} and {logs})")
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
