"""One publisher pod of the publisher group carrying N streams: does every frame get out, and what does a
stream cost?

One publisher process in registry mode (a thread per stream, one producer) carries N registry streams, each a
looping video (25 frames/s decoded, sampled to `fps`, resized to `size`, JPEG-encoded), against a broker. After
a warm-up, it counts over a window the frames of each stream that reached the frames topic, against fps x the
window, and the process's CPU seconds per stream per second of video.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.common import log
from tools.harness.processes import publisher_group_process, publisher_url
from tools.paths import SAMPLE_VIDEO


def _read_frames(bootstrap: str, topic: str, partitions: int) -> list[tuple[str, float]]:
    """(stream id, capture time in s) of every frame on the topic, read up to its end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from vidpipe.contract import parse_frame_headers
    from vidpipe.kafka import KafkaSettings, consumer_config

    consumer = Consumer(consumer_config(KafkaSettings(bootstrap=bootstrap), f"bench-{uuid.uuid4().hex[:6]}"))
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    found: list[tuple[str, float]] = []
    positions = dict.fromkeys(ends, 0)
    deadline = time.monotonic() + 120
    try:
        while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for record in consumer.consume(500, timeout=1.0):
                if record.error():
                    continue
                positions[record.partition()] = record.offset() + 1
                meta = parse_frame_headers(record.headers())
                found.append((meta.stream_id, meta.capture_ts_us / 1e6))
    finally:
        consumer.close()
    return found


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    figures: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("publisher_") and " " in line:
            name, value = line.rsplit(" ", 1)
            figures[name] = float(value)
    return figures


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of the process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publisher_group(
    bootstrap: str,
    streams: int = 8,
    seconds: float = 60.0,
    fps: float = 5.0,
    size: str = "640x360",
    video: Path = SAMPLE_VIDEO,
    warmup_s: float = 10.0,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one publisher in registry mode carrying `streams` streams of `video` (looped, sampled to `fps`,
    resized to `size`) for `seconds` after `warmup_s`; returns frames delivered against expected per stream
    and the CPU it took."""
    from tools.harness.topics import fresh_topics
    from vidpipe.kafka import KafkaSettings
    from vidpipe.registry_client import RegistryWriter
    from vidpipe.stream_registry import StreamDefinition

    kafka = KafkaSettings(bootstrap=bootstrap)
    run = uuid.uuid4().hex[:6]
    topics = fresh_topics(kafka, prefix="bench-group", partitions=6)
    writer = RegistryWriter(kafka, topics.streams)
    ids = [f"bench-{n}" for n in range(streams)]
    for stream_id in ids:
        writer.put(StreamDefinition(id=stream_id, source=str(video), loop=True, target_fps=fps, resize=size))
    writer.close()
    env = {
        "TOPICS_FRAMES": topics.frames,
        "TOPICS_STREAMS": topics.streams,
        "TOPICS_STREAMS_STATUS": topics.streams_status,
        "TOPICS_RESULTS": topics.results,
        "TOPICS_DEAD_LETTER": topics.dead_letter,
        "TOPICS_EVENTS": topics.events,
        "TOPICS_PARTITIONS": str(topics.partitions),
        "PUBLISHER_GROUP_ID": f"bench-publishers-{run}",
    }
    logs = log_dir or Path(tempfile.mkdtemp(prefix="bench-publisher-group-"))
    process = publisher_group_process(bootstrap, logs, "bench-publisher", **env).start()
    try:
        process.wait_ready(60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with urllib.request.urlopen(publisher_url(process, "/readyz"), timeout=5) as response:
                states = json.load(response).get("streams", {})
            if len(states) == streams and set(states.values()) == {"publishing"}:
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"not every stream publishing after 60s: {states}\n{process.log_tail()}")
        time.sleep(warmup_s)
        pid = process.process.pid
        start, cpu_start = time.time(), _cpu_s(pid)
        time.sleep(seconds)
        end, cpu_end = time.time(), _cpu_s(pid)
        figures = _metrics(publisher_url(process))
    finally:
        process.stop()
    frames = _read_frames(bootstrap, topics.frames, topics.partitions)
    window = end - start
    expected = round(fps * window)
    per_stream = {
        stream_id: {"delivered": sum(1 for s, t in frames if s == stream_id and start <= t < end), "expected": expected}
        for stream_id in ids
    }
    cpu = cpu_end - cpu_start
    report = {
        "streams": streams,
        "fps": fps,
        "size": size,
        "video": video.name,
        "window_s": round(window, 2),
        "per_stream": per_stream,
        "delivered": sum(s["delivered"] for s in per_stream.values()),
        "expected": expected * streams,
        "frames_failed": sum(v for k, v in figures.items() if k.startswith("publisher_frames_failed_total")),
        "frames_dropped": sum(v for k, v in figures.items() if k.startswith("publisher_frames_dropped_total")),
        "cpu_s": round(cpu, 2),
        "cpu_cores": round(cpu / window, 3),
        "cpu_s_per_stream_per_s": round(cpu / window / streams, 4),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    log(f"publisher group: {json.dumps(report)}")
    return report


if __name__ == "__main__":
    import sys

    print(json.dumps(publisher_group(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8), indent=2))
