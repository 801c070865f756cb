"""(c) Kafka transport alone: 1280x720 JPEG frames producer -> broker -> consumer, no inference."""

from __future__ import annotations

import time
import uuid

from bench.common import HD_VIDEO, jpegs, log, video_frames


def _produce_frames(bootstrap: str, topic: str, count: int) -> None:
    """The producer side of the transport test, in its own process like the real publisher."""
    from confluent_kafka import Producer

    from vidpipe.contract import FrameMeta
    from vidpipe.kafka import KafkaSettings, producer_config

    frames = jpegs(video_frames(HD_VIDEO, 132))
    producer = Producer(producer_config(KafkaSettings(bootstrap=bootstrap)))
    for seq in range(count):
        meta = FrameMeta("hd", seq, time.time_ns() // 1000, 1280, 720)
        while True:
            try:
                producer.produce(topic, key=meta.key, value=frames[seq % len(frames)], headers=meta.headers())
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)


def transport(bootstrap: str, count: int, passes: int = 3) -> dict:
    """The best of a few passes, as timeit does: on a shared 2-core VM interference only ever slows
    a pass down, so the fastest is the closest to what the transport itself can do."""
    runs = []
    for _ in range(passes):
        runs.append(_transport_once(bootstrap, count))
        log(f"transport pass: {runs[-1]}")
    result = {**max(runs, key=lambda r: r["fps"]), "fps_by_pass": [r["fps"] for r in runs]}
    encode_started = time.perf_counter()
    decoded = video_frames(HD_VIDEO, 30)
    jpegs(decoded)
    result["publisher_encode_fps"] = round(len(decoded) / (time.perf_counter() - encode_started), 1)
    log(f"transport: {result}")
    return result


def _transport_once(bootstrap: str, count: int) -> dict:
    import multiprocessing

    from confluent_kafka import Consumer

    from vidpipe.kafka import KafkaSettings, consumer_config, ensure_topics
    from vidpipe.topics import TopicSettings

    settings = KafkaSettings(bootstrap=bootstrap)
    topics = TopicSettings(frames=f"bench-transport-{uuid.uuid4().hex[:6]}", partitions=6)
    ensure_topics(settings, topics.specs()[:1])
    consumer = Consumer(consumer_config(settings, f"bench-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topics.frames])
    consumer.consume(1, timeout=3)  # join the group before the clock starts
    producer = multiprocessing.get_context("spawn").Process(
        target=_produce_frames, args=(bootstrap, topics.frames, count)
    )
    producer.start()
    received, size, first, last = 0, 0, 0.0, 0.0
    deadline = time.monotonic() + 300
    while received < count and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=0.5):
            if not message.error():
                first = first or time.perf_counter()
                received += 1
                size += len(message.value())
                last = time.perf_counter()
    producer.join(60)
    consumer.close()
    elapsed = last - first
    return {
        "frames": received,
        "frame_bytes_avg": int(size / max(1, received)),
        "fps": round(received / elapsed, 1),
        "mb_per_s": round(size / elapsed / 1e6, 1),
    }
