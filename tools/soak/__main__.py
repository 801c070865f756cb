"""make soak: the whole pipeline for a while, with a chaos loop, and an account at the end.

Two streams (the sample video, looped, at PUBLISHER_TARGET_FPS) go through a real broker, two consumers,
the inference service, the analytics service and a versioned S3 bucket (moto). Meanwhile a chaos loop
kills (SIGKILL, every third time SIGTERM) and restarts each service in turn, publishers included, several
times, and restarts the broker once. A supervisor restarts whatever exits, as Kubernetes would: no
manual step. At the end the publishers stop, the pipeline drains, and the run passes when
(tools/soak/check.py):
- every frame on the frames topic has a result under its identity (stream, epoch, seq), and no identity
  has results of two different frames;
- no archived object has a second version or a delete marker;
- the analytics service's events equal a replay of the results through the same engine;
- no dead letters, and every service is running and healthy.

    python -m tools.soak [--minutes 10] [--out out/soak] [--readme]

Writes out/soak/latest.json (and the logs beside it); --readme puts the figures into README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools.paths import DEFAULT_MODEL, ROOT, SAMPLE_VIDEO
from tools.soak.check import check_identities, check_versions, replay_stream
from tools.soak.report import update_readme
from vidpipe.analytics_config import load_streams_file
from vidpipe.contract import FrameId, FrameResult, decode_event, decode_result, parse_frame_headers

STREAMS = ("soak-a", "soak-b")
# bikes.mp4 (640x272): a line across the road and the stretch of road it cuts (as tools/demo.py).
LINES = [{"name": "street", "start": [0.6, 0.85], "end": [0.6, 0.45]}]
ZONES = [{"name": "road", "polygon": [[0.5, 0.52], [0.72, 0.52], [0.72, 0.7], [0.5, 0.7]]}]
# The order the chaos loop goes round in; the broker restarts once, in the middle of the run.
ROUND = ("publisher:soak-a", "consumer-1", "inference", "analytics", "publisher:soak-b", "consumer-2")
RESTART_AFTER_S = 2.0  # a crashed pod's restart, roughly


@dataclass
class Service:
    name: str
    make: Callable[[], Any]  # -> a started ServiceProcess
    health: Callable[[Any], str]  # process -> its readiness URL
    process: Any = None
    planned_stop: bool = False
    down_since: float | None = None
    starts: int = 0
    unplanned_exits: int = 0
    retire: bool = False  # the publishers at the end: stopped for good

    def start(self) -> None:
        self.process = self.make()
        self.starts += 1
        self.down_since = None
        self.planned_stop = False


@dataclass
class Figures:
    minutes: float
    fps_per_stream: float
    chaos: dict[str, int] = field(default_factory=dict)  # not a Counter: asdict() would count its items
    restarts: dict[str, int] = field(default_factory=dict)
    unplanned_exits: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    drain_s: float = 0.0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _port_url(process: Any, *variables: str, path: str = "/readyz") -> str:
    """The first of the variables the process was given (an ops port before the API port)."""
    port = next(process.env[v] for v in variables if process.env.get(v))
    return f"http://127.0.0.1:{port}{path}"


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record of the topic, from the beginning to the end offsets it had when asked."""
    from confluent_kafka import Consumer, TopicPartition

    from vidpipe.kafka import KafkaSettings, consumer_config

    consumer = Consumer(
        {
            **consumer_config(KafkaSettings(bootstrap=bootstrap), f"soak-reader-{uuid.uuid4().hex[:8]}"),
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        records: list[Any] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error():
                    continue
                records.append(message)
                if message.offset() + 1 >= ends[message.partition()]:
                    done.add(message.partition())
        if len(done) < len(ends):
            raise TimeoutError(f"{topic}: read {len(records)} records, not to the end within {timeout_s:.0f} s")
        return records
    finally:
        consumer.close()


def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Records of the topic the group has not committed yet (None before it committed anything)."""
    from confluent_kafka import Consumer, TopicPartition

    from vidpipe.kafka import KafkaSettings, consumer_config

    consumer = Consumer(consumer_config(KafkaSettings(bootstrap=bootstrap), group))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        lag = 0
        for tp in committed:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if tp.offset < 0:
                if high > 0:
                    return None
                continue
            lag += max(0, high - tp.offset)
        return lag
    finally:
        consumer.close()


def run(minutes: float, out: Path, fps: float, seed: int) -> dict[str, Any]:
    import logging

    from moto.server import ThreadedMotoServer

    from tools.harness.processes import (
        analytics_process,
        consumer_process,
        free_port,
        inference_process,
        publisher_process,
    )
    from tools.kafka.broker import LocalBroker
    from vidpipe.kafka import KafkaSettings, ensure_topics
    from vidpipe.topics import TopicSettings

    rng = random.Random(seed)
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    workdir = out / f"run-{run_id}"
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    figures = Figures(minutes=minutes, fps_per_stream=fps)
    with ExitStack() as stack:
        broker = LocalBroker(workdir / "kafka", port=0, controller_port=0, die_with_parent=True).start()
        stack.callback(broker.stop)
        bootstrap = broker.bootstrap
        topics = TopicSettings(
            frames="soak.frames", results="soak.results", dead_letter="soak.dlq", events="soak.events", partitions=3
        )
        ensure_topics(KafkaSettings(bootstrap=bootstrap), topics.specs())
        topic_env = {
            "TOPICS_FRAMES": topics.frames,
            "TOPICS_RESULTS": topics.results,
            "TOPICS_DEAD_LETTER": topics.dead_letter,
            "TOPICS_EVENTS": topics.events,
            "TOPICS_PARTITIONS": str(topics.partitions),
        }

        s3_port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        moto.start()
        stack.callback(moto.stop)
        aws = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{s3_port}",
        }
        saved = {k: os.environ.get(k) for k in aws}
        os.environ.update(aws)  # the children inherit it, and so does this process's boto3
        stack.callback(
            lambda: [os.environ.pop(k, None) if v is None else os.environ.update({k: v}) for k, v in saved.items()]
        )
        import boto3

        s3 = boto3.client("s3")
        bucket = f"soak-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        archive = f"s3://{bucket}/archive"

        streams_file = workdir / "streams.yaml"
        streams_file.write_text(
            yaml.safe_dump(
                {
                    "streams": [{"name": s} for s in STREAMS],
                    "analytics": {s: {"lines": LINES, "zones": ZONES} for s in STREAMS},
                }
            )
        )
        config = load_streams_file(streams_file)

        inference_port = free_port()
        inference_ops = free_port()
        analytics_port = free_port()
        analytics_ops = free_port()
        consumer_group = "soak-inference"
        analytics_group = "soak-analytics"
        inference_url = f"http://127.0.0.1:{inference_port}"

        def inference() -> Any:
            return inference_process(inference_port, logs, DEFAULT_MODEL, INFERENCE_OPS_PORT=str(inference_ops)).start()

        def consumer(name: str) -> Callable[[], Any]:
            def make() -> Any:
                return consumer_process(
                    bootstrap,
                    inference_url,
                    archive,
                    logs,
                    name=name,
                    CONSUMER_GROUP_ID=consumer_group,
                    CONSUMER_RETRY_MAX_S="2",
                    CONSUMER_SHUTDOWN_TIMEOUT_S="10",
                    **topic_env,
                ).start()

            return make

        def analytics() -> Any:
            return analytics_process(
                bootstrap,
                logs,
                streams_file,
                archive,
                analytics_port,
                ANALYTICS_OPS_PORT=str(analytics_ops),
                ANALYTICS_GROUP_ID=analytics_group,
                **topic_env,
            ).start()

        def publisher(stream: str) -> Callable[[], Any]:
            def make() -> Any:
                process = publisher_process(
                    bootstrap,
                    SAMPLE_VIDEO,
                    logs,
                    ["--stream-id", stream, "--loop", "--pace", "source", "--target-fps", str(fps)],
                    **topic_env,
                )
                process.name, process.log_path = f"publisher-{stream}", logs / f"publisher-{stream}.log"
                return process.start()

            return make

        services = [
            Service("inference", inference, lambda p: _port_url(p, "INFERENCE_OPS_PORT", "INFERENCE_PORT")),
            Service("consumer-1", consumer("consumer-1"), lambda p: _port_url(p, "CONSUMER_HEALTH_PORT")),
            Service("consumer-2", consumer("consumer-2"), lambda p: _port_url(p, "CONSUMER_HEALTH_PORT")),
            Service("analytics", analytics, lambda p: _port_url(p, "ANALYTICS_OPS_PORT", "ANALYTICS_PORT")),
            *(
                Service(f"publisher:{s}", publisher(s), lambda p: _port_url(p, "PUBLISHER_HEALTH_PORT"))
                for s in STREAMS
            ),
        ]
        by_name = {s.name: s for s in services}

        def stop_all() -> None:
            for service in services:
                if service.process is not None:
                    service.process.stop(timeout_s=15)

        stack.callback(stop_all)
        for service in services:
            service.start()
        by_name["inference"].process.wait_http(by_name["inference"].health(by_name["inference"].process), 180)

        def supervise() -> None:
            """Restart what exited (a crash, a chaos kill), after RESTART_AFTER_S, as the kubelet would."""
            now = time.monotonic()
            for service in services:
                if service.retire or service.process is None or service.process.running:
                    continue
                if service.down_since is None:
                    service.down_since = now
                    if not service.planned_stop:
                        service.unplanned_exits += 1
                        print(
                            f"  {service.name} exited by itself ({service.process.process.returncode})",
                            flush=True,
                        )
                elif now - service.down_since >= RESTART_AFTER_S:
                    service.start()

        duration = minutes * 60
        actions = max(len(ROUND) + 1, int(duration // 20))  # about one every 20 s, each service at least once
        schedule: list[tuple[float, str]] = []
        for index in range(actions):
            schedule.append((duration * (index + 1) / (actions + 1), ROUND[index % len(ROUND)]))
        broker_at = duration / 2
        schedule.append((broker_at, "broker"))
        schedule.sort()
        started = time.monotonic()
        print(f"soak: {minutes:g} min, {len(schedule)} chaos actions, logs in {logs}", flush=True)
        kills = 0
        while (elapsed := time.monotonic() - started) < duration:
            while schedule and schedule[0][0] <= elapsed:
                _, target = schedule.pop(0)
                if target == "broker":
                    print(f"  {elapsed:6.1f}s chaos: broker restart", flush=True)
                    broker.restart()
                    figures.chaos["broker restart"] = figures.chaos.get("broker restart", 0) + 1
                    continue
                service = by_name[target]
                if service.process is None or not service.process.running:
                    continue
                kills += 1
                how = signal.SIGTERM if kills % 3 == 0 else signal.SIGKILL
                print(f"  {elapsed:6.1f}s chaos: {how.name} {target}", flush=True)
                service.planned_stop = True
                service.process.signal(how)
                what = f"{how.name} {target.split(':')[0].rstrip('-0123456789')}"
                figures.chaos[what] = figures.chaos.get(what, 0) + 1
            supervise()
            time.sleep(0.2 + rng.random() * 0.1)

        # The end: the publishers stop for good (SIGTERM: they deliver what they hold), the rest drains.
        for stream in STREAMS:
            service = by_name[f"publisher:{stream}"]
            service.retire = True
            if service.process is not None:
                service.process.stop(timeout_s=30)
        drain_started = time.monotonic()
        drained = False
        while time.monotonic() - drain_started < 240:
            supervise()
            consumer_lag = group_lag(bootstrap, consumer_group, topics.frames)
            analytics_lag = group_lag(bootstrap, analytics_group, topics.results)
            if consumer_lag == 0 and analytics_lag == 0:
                drained = True
                break
            time.sleep(1)
        figures.drain_s = round(time.monotonic() - drain_started, 1)
        healthy = {
            s.name: bool(s.process is not None and s.process.running and _http_ok(s.health(s.process)))
            for s in services
            if not s.retire
        }
        for service in services:
            figures.restarts[service.name] = service.starts - 1
            figures.unplanned_exits[service.name] = service.unplanned_exits

        frames = read_topic(bootstrap, topics.frames)
        published: dict[FrameId, int] = {}
        for record in frames:
            meta = parse_frame_headers(record.headers())
            published[meta.identity] = meta.capture_ts_us
        figures.epochs = {s: len({i.epoch for i in published if i.stream_id == s}) for s in STREAMS}
        results: list[FrameResult] = [decode_result(r.value()) for r in read_topic(bootstrap, topics.results)]
        events = [decode_event(r.value()) for r in read_topic(bootstrap, topics.events)]
        dead_letters = len(read_topic(bootstrap, topics.dead_letter))

        keys: list[str] = []
        markers: list[str] = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            keys += [v["Key"] for v in page.get("Versions", [])]
            markers += [m["Key"] for m in page.get("DeleteMarkers", [])]

    identities = check_identities(published, results)
    versions = check_versions(keys, markers, "archive/frames/")
    replays = [replay_stream(s, results, events, config) for s in STREAMS]
    checks = {
        "drained": drained,
        "every frame has a result under its identity": identities.ok,
        "no object has a second version": versions.ok,
        "one archived frame per identity": versions.frames == identities.published,
        "analytics events equal the replay": all(r.ok for r in replays),
        "no dead letters": dead_letters == 0,
        "every service healthy at the end": all(healthy.values()),
    }
    summary = {
        "run": run_id,
        "ok": all(checks.values()),
        "checks": checks,
        "figures": {
            **asdict(figures),
            "frames_published": identities.published,
            "frames_with_results": identities.with_results,
            "missing": [list(i) for i in identities.missing[:20]],
            "conflicting": [list(i) for i in identities.conflicting[:20]],
            "results_read": identities.results_read,
            "duplicate_results": identities.duplicate_results,
            "dead_letters": dead_letters,
            "archived_objects": versions.objects,
            "archived_frames": versions.frames,
            "object_versions": versions.versions,
            "objects_with_several_versions": versions.with_several_versions[:20],
            "delete_markers": versions.delete_markers[:20],
            "healthy": healthy,
            "analytics": [
                {
                    "stream": r.stream_id,
                    "results": r.results,
                    "tracker_lives": r.tracker_lives,
                    "events": r.service_events,
                    "overlap_events_set_aside": r.overlap_events,
                    "replay_events": r.replay_events,
                    "only_service": [repr(k) for k in r.only_service],
                    "only_replay": [repr(k) for k in r.only_replay],
                    "counts": r.counts,
                    "replay_counts": r.replay_counts,
                }
                for r in replays
            ],
        },
        "logs": str(logs.relative_to(ROOT)) if logs.is_relative_to(ROOT) else str(logs),
    }
    (out / "latest.json").write_text(json.dumps(summary, indent=2, default=str))
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the chaos lasts (default 10)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "soak")
    parser.add_argument("--fps", type=float, default=4.0, help="frames per second per stream (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--readme", action="store_true", help="put the figures into README.md")
    args = parser.parse_args(argv)
    for required in (DEFAULT_MODEL, SAMPLE_VIDEO):
        if not required.is_file():
            print(f"{required} is missing: run `make setup` first", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    summary = run(args.minutes, args.out, args.fps, args.seed)
    print(json.dumps({"ok": summary["ok"], "checks": summary["checks"]}, indent=2))
    if args.readme:
        update_readme(summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
