"""End to end with real parts: publisher process -> Kafka -> consumer process -> inference server
-> results topic + S3 archive (moto over HTTP)."""

import json
import uuid
from collections import Counter

import boto3
import pytest

from tests.fixtures.pipeline import topic_env
from tests.helpers import read_all, results_by_seq
from tools.harness.processes import consumer_health_url, consumer_process, publisher_process
from vidpipe.contract import decode_result

pytestmark = [pytest.mark.broker, pytest.mark.model]


def test_every_published_frame_gets_exactly_one_result_and_is_archived(
    kafka_bootstrap, kafka_settings, topics, inference_url, s3_bucket, sample_video, tmp_path
):
    env = topic_env(topics)
    consumer = consumer_process(
        kafka_bootstrap,
        inference_url,
        f"s3://{s3_bucket}/archive",
        tmp_path,
        CONSUMER_GROUP_ID=f"e2e-{uuid.uuid4().hex[:6]}",
        **env,
    ).start()
    try:
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        summary_file = tmp_path / "publisher.json"
        publisher = publisher_process(
            kafka_bootstrap,
            sample_video,
            tmp_path,
            ["--stream-id", "bikes", "--pace", "fast", "--summary-file", str(summary_file)],
            **env,
        )
        assert publisher.start().process.wait(180) == 0, publisher.log_tail()
        published = json.loads(summary_file.read_text())
        assert published["frames_published"] == published["frames_delivered"] == 250

        records = read_all(kafka_settings, topics.results, expect=250, timeout_s=240)
        assert consumer.running, consumer.log_tail()
    finally:
        consumer.stop()

    found = results_by_seq(records)
    assert set(found) == {("bikes", seq) for seq in range(250)}
    assert all(len(docs) == 1 for docs in found.values()), "a clean run publishes exactly one result per frame"
    for record in records:
        decode_result(record.value())  # every result follows the contract

    labels = Counter(d["label"] for docs in found.values() for d in docs[0]["detections"])
    assert {"car", "person", "bicycle"} <= set(labels), labels
    any_doc = found[("bikes", 100)][0]
    for det in any_doc["detections"]:
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 272  # source-frame pixels

    s3 = boto3.client("s3")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix="archive/")
        for o in page.get("Contents", [])
    ]
    frame_keys = [k for k in keys if k.startswith("archive/frames/bikes/")]
    assert len(frame_keys) == 250 and all(k.endswith(".jpg") for k in frame_keys)
    archived_seqs = set()
    for key in (k for k in keys if k.startswith("archive/results/bikes/")):
        assert key.endswith(".jsonl")
        lines = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read().splitlines()
        archived_seqs.update(json.loads(line)["seq"] for line in lines)
    assert archived_seqs == set(range(250))


def test_a_raw_mode_model_outputs_reach_the_results_topic(
    kafka_bootstrap, kafka_settings, topics, sample_video, tmp_path
):
    """A bring-your-own model without a detection decoder: its output tensors, not an empty detection
    list, are what the results carry (the contract's `outputs`)."""
    from tests.helpers import produce_frames, tiny_model, video_jpegs
    from tools.harness.processes import free_port, inference_process

    model = tiny_model(tmp_path / "mean_colour.onnx")
    port = free_port()
    inference = inference_process(port, tmp_path, model).start()
    consumer = None
    try:
        inference.wait_ready(timeout_s=60)
        consumer = consumer_process(
            kafka_bootstrap,
            f"http://127.0.0.1:{port}",
            str(tmp_path / "archive"),
            tmp_path,
            CONSUMER_GROUP_ID=f"raw-{uuid.uuid4().hex[:6]}",
            **topic_env(topics),
        ).start()
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        produce_frames(kafka_settings, topics.frames, "raw", video_jpegs(sample_video, 5))
        records = read_all(kafka_settings, topics.results, expect=5, timeout_s=60)
    finally:
        for process in (consumer, inference):
            if process is not None:
                process.stop()

    results = [decode_result(record.value()) for record in records]
    assert sorted(r.seq for r in results) == list(range(5))
    for result in results:
        assert result.detections == [] and result.outputs is not None, result
        mean_colour = result.outputs["mean_colour"]
        assert mean_colour.shape == [3] and len(mean_colour.data) == 3
        assert all(0.0 <= value <= 255.0 for value in mean_colour.data)
