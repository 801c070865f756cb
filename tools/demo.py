"""`make demo`: stream the sample video through a real broker to the real model and report.

Starts a local Kafka broker (unless KAFKA_BOOTSTRAP names one), the inference service and the
consumer; publishes bikes.mp4 at its own frame rate; waits until every published frame has a
result; writes out/summary.json and annotated frames; stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np

from tools.harness.processes import (
    consumer_health_url,
    consumer_process,
    free_port,
    inference_process,
    publisher_process,
)
from tools.harness.results import ResultCollector, summarize
from tools.paths import CACHE, DEFAULT_MODEL, ROOT, SAMPLE_VIDEO

PALETTE = [
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
    (147, 69, 52),
    (255, 115, 100),
]


def annotate(jpeg: bytes, detections: list[dict]) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    for det in detections:
        color = PALETTE[det["class_id"] % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in det["box"])
        cv2.rectangle(image, (x1, y1), (x2, y2), color, 2)
        text = f"{det['label']} {det['score']:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(image, (x1, max(0, y1 - th - 6)), (x1 + tw + 4, y1), color, -1)
        cv2.putText(
            image, text, (x1 + 2, max(th, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
        )
    return image


def write_annotated(out: Path, archive: Path, results: dict, every: int) -> int:
    from vidpipe.storage import frame_key

    folder = out / "annotated"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    written = 0
    for (stream_id, seq), doc in sorted(results.items()):
        if seq % every:
            continue
        frame = archive / frame_key(stream_id, doc["capture_ts_us"], seq)
        if frame.exists():
            cv2.imwrite(str(folder / f"{stream_id}-{seq:06d}.jpg"), annotate(frame.read_bytes(), doc["detections"]))
            written += 1
    return written


def print_table(summary: dict) -> None:
    rows = [
        (k, summary[k])
        for k in (
            "frames_published",
            "frames_processed",
            "frames_lost",
            "frames_dropped",
            "frames_dead_lettered",
            "fps",
        )
    ]
    rows += [(f"latency {k} (ms)", v) for k, v in summary["latency_ms"].items()]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, default=SAMPLE_VIDEO)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--pace", choices=["source", "fast"], default="source")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every result")
    parser.add_argument("--annotate-every", type=int, default=5, help="write every Nth annotated frame")
    args = parser.parse_args(argv)

    for path, how in ((args.video, "make sample"), (args.model, "make model")):
        if not path.exists():
            print(f"error: {path} is missing; run `{how}` (or `make demo`, which does all set-up)", file=sys.stderr)
            return 1
    out = args.out
    archive = out / "archive"
    logs = out / "logs"
    shutil.rmtree(archive, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    stream_id = f"{args.video.stem}-{time.strftime('%Y%m%dT%H%M%S')}"

    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        if bootstrap:
            print(f"using the broker at KAFKA_BOOTSTRAP={bootstrap}")
        else:
            print("starting a local Kafka broker (KRaft, one node)...")
            bootstrap = start_broker(stack, CACHE / "demo" / "kafka")
        inference_port = free_port()
        inference = inference_process(inference_port, logs, args.model).start()
        stack.callback(inference.stop)
        consumer = consumer_process(bootstrap, f"http://127.0.0.1:{inference_port}", str(archive), logs)
        print("starting the inference service and the consumer...")
        inference.wait_http(f"http://127.0.0.1:{inference_port}/readyz")
        consumer.start()
        stack.callback(consumer.stop)
        consumer.wait_http(consumer_health_url(consumer))

        from vidpipe.topics import TopicSettings

        collector = ResultCollector(bootstrap, TopicSettings().results, {stream_id})
        stack.callback(collector.close)
        summary_file = out / "publisher.json"
        publisher = publisher_process(
            bootstrap,
            args.video,
            logs,
            ["--stream-id", stream_id, "--pace", args.pace, "--summary-file", str(summary_file), "--progress"],
        )
        print(f"streaming {args.video.name} as stream {stream_id}...")
        started = time.monotonic()
        publisher.start()
        while publisher.running:
            collector.poll(0.5)
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
        summary = summarize(published["frames_published"], published["frames_dropped"], 0, collector)
        summary.update(
            {
                "stream_id": stream_id,
                "source": str(args.video.name),
                "elapsed_s": round(elapsed, 2),
                "frames_missing": len(missing),
            }
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        annotated = write_annotated(out, archive, collector.results, args.annotate_every)
        print_table(summary)
        print(
            f"wrote {out / 'summary.json'}, {annotated} annotated frames in {out / 'annotated'}, archive in {archive}"
        )
        if missing:
            print(
                f"error: {len(missing)} frames have no result after {args.timeout:.0f}s (see {logs})", file=sys.stderr
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
