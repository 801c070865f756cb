"""The consumer against a real broker: poison records go to the dead-letter topic with a reason, and an
unreachable inference service, or one that refuses the consumer's token, is waited out without committing,
dead-lettering or crashing."""

import threading
import time
import uuid

import pytest
from prometheus_client import CollectorRegistry

from tests.faults.harness import Account, consumer_metric, record_row, wait_consumer_health
from tests.fixtures.pipeline import topic_env
from tests.helpers import (
    TurnsFatal,
    committed_offsets,
    produce_frames,
    produce_raw,
    read_all,
    results_by_seq,
    tiny_model,
    turn_fatal_after,
    video_jpegs,
)
from tools.harness.processes import consumer_health_url, consumer_process, free_port, inference_process
from tools.harness.results import ResultCollector
from vidpipe.contract import MAX_FRAME_BYTES, FrameMeta, Header, header_dict

pytestmark = [pytest.mark.broker, pytest.mark.model]


def test_poison_records_are_dead_lettered_and_neighbours_processed(
    kafka_bootstrap, kafka_settings, topics, inference_url, sample_video, tmp_path
):
    good = video_jpegs(sample_video, 4)
    frames = topics.frames
    meta = FrameMeta("poison", 100, time.time_ns() // 1000, 640, 272)
    produce_frames(kafka_settings, frames, "poison", good[:2], first_seq=0)
    produce_raw(kafka_settings, frames, b"poison", good[0][:2000] + b"\x00" * 50, meta.headers())  # truncated JPEG
    produce_raw(kafka_settings, frames, b"poison", b"", meta.headers())  # empty value
    produce_raw(kafka_settings, frames, b"poison", b"\xff\xd8" + b"\x00" * MAX_FRAME_BYTES, meta.headers())  # oversized
    produce_raw(kafka_settings, frames, b"poison", good[0], [(Header.SCHEMA_VERSION, b"1")])  # headers missing
    produce_frames(kafka_settings, frames, "poison", good[2:], first_seq=2)

    consumer = consumer_process(
        kafka_bootstrap,
        inference_url,
        str(tmp_path / "archive"),
        tmp_path,
        CONSUMER_GROUP_ID=f"poison-{uuid.uuid4().hex[:6]}",
        **topic_env(topics),
    ).start()
    try:
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        dead = read_all(kafka_settings, topics.dead_letter, expect=4, timeout_s=60)
        results = read_all(kafka_settings, topics.results, expect=4, timeout_s=60)
        assert consumer.running, consumer.log_tail()
    finally:
        consumer.stop()

    reasons = sorted(header_dict(r.headers())[Header.ERROR_REASON] for r in dead)
    assert len(reasons) == 4, reasons
    assert any("truncated" in r or "corrupt" in r for r in reasons)
    assert any("empty" in r for r in reasons)
    assert any("frame limit" in r for r in reasons)
    assert any("'stream-id' is missing" in r for r in reasons)
    for record in dead:
        headers = header_dict(record.headers())
        assert headers[Header.SOURCE_TOPIC] == frames and headers[Header.ERROR_STAGE] == "validate"
    assert set(results_by_seq(results)) == {("poison", s) for s in range(4)}
    record_row(
        "poison records",
        "a corrupt, an empty, an oversized and a header-less record go to the "
        "dead-letter topic with their reason; the 4 frames around them are processed",
        Account(published=8, with_results=len(results), duplicates=0, missing=[]),
        dead_lettered=len(dead),
    )


def test_consumer_waits_out_unreachable_inference_without_committing(
    kafka_bootstrap, kafka_settings, topics, sample_video, tmp_path
):
    port = free_port()  # nothing listens here yet
    group = f"outage-{uuid.uuid4().hex[:6]}"
    produce_frames(kafka_settings, topics.frames, "outage", video_jpegs(sample_video, 6, every=20))
    consumer = consumer_process(
        kafka_bootstrap,
        f"http://127.0.0.1:{port}",
        str(tmp_path / "archive"),
        tmp_path,
        CONSUMER_GROUP_ID=group,
        CONSUMER_RETRY_INITIAL_S="0.2",
        CONSUMER_RETRY_MAX_S="1",
        **topic_env(topics),
    ).start()
    inference = None
    try:
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        time.sleep(4)
        assert consumer.running, consumer.log_tail()
        assert all(o < 0 for o in committed_offsets(kafka_settings, group, topics.frames, topics.partitions))
        assert "inference unavailable" in consumer.log_tail(100)

        inference = inference_process(port, tmp_path, tiny_model(tmp_path / "tiny.onnx")).start()  # loads in ms
        results = read_all(kafka_settings, topics.results, expect=6, timeout_s=120)
        assert set(results_by_seq(results)) == {("outage", s) for s in range(6)}
    finally:
        consumer.stop()
        if inference:
            inference.stop()
    assert sum(o for o in committed_offsets(kafka_settings, group, topics.frames, topics.partitions) if o > 0) == 6


def test_a_fatal_producer_error_is_replaced_and_every_frame_gets_its_result(
    kafka_bootstrap, kafka_settings, topics, inference_url, sample_video, tmp_path
):
    from consumer_service.archive import Archiver
    from consumer_service.inference_client import InferenceClient
    from consumer_service.settings import ConsumerSettings
    from consumer_service.worker import ConsumerWorker
    from vidpipe.storage import open_storage

    frames = 40
    produce_frames(kafka_settings, topics.frames, "fatal", video_jpegs(sample_video, frames))
    settings = ConsumerSettings(
        inference_url=inference_url,
        archive_uri=str(tmp_path / "archive"),
        group_id=f"fatal-{uuid.uuid4().hex[:6]}",
        batch_max_frames=4,
        health_port=0,
    )
    registry = CollectorRegistry()
    worker = ConsumerWorker(
        settings,
        kafka_settings,
        topics,
        archiver=Archiver(open_storage(settings.archive_uri), 2, True),
        client=InferenceClient(str(settings.inference_url), settings.inference_timeout_s),
        registry=registry,
    )
    turn_fatal_after(worker.producers, healthy=10)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # the assertion below says what it was
            failure.append(exc)

    collector = ResultCollector(kafka_bootstrap, topics.results)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        missing = collector.wait_for({("fatal", s) for s in range(frames)}, timeout_s=90)
    finally:
        worker.stop()
        thread.join(60)
        collector.close()
    assert not failure, failure
    assert missing == set(), "every frame has a result"
    assert registry.get_sample_value("consumer_producer_restarts_total") == 1, "the fatal producer was replaced"
    assert not isinstance(worker.producer, TurnsFatal), "by a real one"
    assert worker.counts.dead_lettered == 0, "a producer's failure is no record's fault"
    record_row(
        "producer fatal error",
        "the consumer replaces its producer and replays every uncommitted batch",
        Account(frames, frames - len(missing), collector.duplicates, sorted(s for _, s in missing)),
    )


def test_a_token_the_service_refuses_is_an_outage_never_dead_letters(
    kafka_bootstrap, kafka_settings, topics, sample_video, tmp_path
):
    """The real inference service with INFERENCE_API_TOKEN answers 401 to a consumer without its token:
    nothing is dead-lettered or committed, /healthz says to set CONSUMER_INFERENCE_TOKEN; the consumer
    restarted with the token (from a mounted file) gets every result."""
    token = "integration-token-0123456789"
    port = free_port()
    inference = inference_process(port, tmp_path, tiny_model(tmp_path / "tiny.onnx"), INFERENCE_API_TOKEN=token).start()
    group = f"token-{uuid.uuid4().hex[:6]}"
    produce_frames(kafka_settings, topics.frames, "token", video_jpegs(sample_video, 6, every=20))
    common = {"CONSUMER_GROUP_ID": group, **topic_env(topics)}
    consumer = fixed = None
    try:
        inference.wait_ready(timeout_s=60)
        consumer = consumer_process(
            kafka_bootstrap,
            f"http://127.0.0.1:{port}",
            str(tmp_path / "archive"),
            tmp_path,
            CONSUMER_UNHEALTHY_AFTER_S="2",
            CONSUMER_RETRY_MAX_S="1",
            **common,
        ).start()
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        body = wait_consumer_health(consumer, 503, timeout_s=60)
        assert "HTTP 401" in body["reason"] and "set CONSUMER_INFERENCE_TOKEN" in body["reason"], body
        assert consumer_metric(consumer, "consumer_retries_total", dependency="inference", cause="http_401") >= 2
        assert consumer_metric(consumer, "consumer_frames_dead_lettered_total") == 0
        assert all(o < 0 for o in committed_offsets(kafka_settings, group, topics.frames, topics.partitions))
        assert consumer.stop() == 0, consumer.log_tail()

        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        fixed = consumer_process(
            kafka_bootstrap,
            f"http://127.0.0.1:{port}",
            str(tmp_path / "archive"),
            tmp_path,
            name="consumer-with-token",
            CONSUMER_INFERENCE_TOKEN_FILE=str(token_file),
            **common,
        ).start()
        results = read_all(kafka_settings, topics.results, expect=6, timeout_s=90)
        assert set(results_by_seq(results)) == {("token", s) for s in range(6)}
        assert read_all(kafka_settings, topics.dead_letter, expect=1, timeout_s=2) == []
        assert token not in consumer.log_tail(500) + fixed.log_tail(500), "the token is never logged"
    finally:
        for process in (consumer, fixed, inference):
            if process is not None:
                process.stop()
