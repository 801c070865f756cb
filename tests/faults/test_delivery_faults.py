"""Things break for real (processes killed, broker restarted, inference away or misaddressed, the results
topic missing, members joining and leaving) while real frames flow; at the end every published frame has at
least one result."""

import json
import signal
import time
import uuid

import pytest

from tests.faults.harness import (
    FaultRun,
    archive_state,
    consumer_metric,
    record_row,
    wait_consumer_health,
)
from tests.helpers import committed_offsets, read_all
from tools.harness.processes import free_port, inference_process
from vidpipe.contract import parse_frame_headers

pytestmark = [pytest.mark.broker, pytest.mark.model, pytest.mark.faults]

FRAMES = range(250)  # bikes.mp4
# At least once: duplicates may only come from batches that were in flight, uncommitted, when a
# member died: at most CONSUMER_MAX_INFLIGHT_BATCHES (3) x CONSUMER_BATCH_MAX_FRAMES (16).
UNCOMMITTED_WINDOW = 3 * 16


@pytest.fixture
def run(kafka_bootstrap, topics, inference_url, tmp_path):
    fault_run = FaultRun(kafka_bootstrap, topics, inference_url, tmp_path)
    yield fault_run
    fault_run.close()


def test_consumer_killed_mid_stream_loses_nothing(run, sample_video):
    consumer = run.consumer()
    run.publisher(sample_video, "--pace", "fast")
    run.wait_results(60, timeout_s=120)
    consumer.signal(signal.SIGKILL)
    consumer.process.wait(10)
    run.consumer(name="consumer-restarted")
    account = run.account(FRAMES)
    record_row(
        "consumer SIGKILL", "restarted member resumes from the last commit; the uncommitted batches replay", account
    )
    assert account.missing == [], account.context
    assert account.duplicates <= UNCOMMITTED_WINDOW


def test_broker_restart_mid_stream_loses_and_duplicates_nothing(kafka_settings, sample_video, tmp_path, inference_url):
    from tools.kafka.broker import LocalBroker
    from vidpipe.kafka import KafkaSettings, ensure_topics
    from vidpipe.topics import TopicSettings

    broker = LocalBroker(tmp_path / "kafka", port=0, controller_port=0, die_with_parent=True).start()
    topics = TopicSettings(frames="restart.frames", results="restart.results", dead_letter="restart.dlq", partitions=3)
    ensure_topics(KafkaSettings(bootstrap=broker.bootstrap), topics.specs())
    run = FaultRun(broker.bootstrap, topics, inference_url, tmp_path)
    try:
        run.consumer()
        publisher = run.publisher(sample_video, "--pace", "source")  # 10 s of video at 25 fps
        run.wait_results(40, timeout_s=60)
        broker.restart()
        assert publisher.process.wait(120) == 0, publisher.log_tail()
        summary = run.publisher_summary()
        assert summary["frames_published"] == summary["frames_delivered"] == 250
        account = run.account(FRAMES)
        frames = read_all(KafkaSettings(bootstrap=broker.bootstrap), topics.frames, expect=251, timeout_s=20)
    finally:
        run.close()
        broker.stop()
    record_row("broker restart", "producer retries idempotently; consumer rejoins and resumes", account)
    seqs = [parse_frame_headers(f.headers()).seq for f in frames]
    assert sorted(seqs) == list(FRAMES), "the idempotent producer wrote each frame exactly once"
    assert account.missing == [], account.context
    assert account.duplicates == 0, "a broker restart is no reason to process a frame twice"


def test_inference_down_20s_is_waited_out(run, sample_video, default_model, kafka_settings):
    port = free_port()
    inference = inference_process(port, run.workdir, default_model).start()
    inference.wait_ready()
    consumer = run.consumer(inference_url=f"http://127.0.0.1:{port}", CONSUMER_RETRY_MAX_S="2")
    run.publisher(sample_video, "--pace", "source")
    run.wait_results(40, timeout_s=60)
    inference.stop()
    outage_started = time.monotonic()
    while time.monotonic() - outage_started < 20:
        run.poll_results(1)
        committed = sum(o for o in committed_offsets(kafka_settings, run.group, run.topics.frames, 3) if o > 0)
        assert committed <= len(run.seen), "committed frames that have no result"
    assert consumer.running, consumer.log_tail()
    assert "inference unavailable" in consumer.log_tail(200)
    inference = inference_process(port, run.workdir, default_model).start()
    run.processes.append(inference)
    account = run.account(FRAMES)
    record_row("inference down 20 s", "consumer backs off, pauses its partitions, commits nothing unfinished", account)
    assert account.missing == [], account.context
    assert account.duplicates == 0  # nothing died: nothing replays


def test_rebalance_join_then_leave_loses_nothing(run, sample_video):
    first = run.consumer(name="consumer-a")
    run.publisher(sample_video, "--pace", "source")
    run.wait_results(50, timeout_s=60)
    run.consumer(name="consumer-b")
    run.wait_results(120, timeout_s=60)
    first.stop()
    account = run.account(FRAMES)
    record_row("rebalance", "cooperative rebalance; revoked partitions' batches finish and commit first", account)
    assert account.missing == [], account.context
    assert account.duplicates <= UNCOMMITTED_WINDOW


@pytest.mark.parametrize("service", ["consumer", "publisher", "inference"])
def test_rolling_restart_with_sigterm_loses_nothing(run, sample_video, default_model, service):
    port = free_port()
    inference = inference_process(port, run.workdir, default_model).start()
    run.processes.append(inference)
    inference.wait_ready()
    consumer = run.consumer(inference_url=f"http://127.0.0.1:{port}")
    publisher = run.publisher(sample_video, "--pace", "source")
    run.wait_results(50, timeout_s=60)
    if service == "consumer":
        assert consumer.stop() == 0, consumer.log_tail()
        run.consumer(name="consumer-2", inference_url=f"http://127.0.0.1:{port}")
    elif service == "inference":
        assert inference.stop() == 0, inference.log_tail()
        replacement = inference_process(port, run.workdir, default_model).start()
        run.processes.append(replacement)
    else:
        assert publisher.stop() == 0, publisher.log_tail()
        summary = run.publisher_summary()
        assert summary["frames_published"] == summary["frames_delivered"], "SIGTERM flushes every pending frame"
        first_run = summary["frames_published"]
        # The same run continued: its epoch and the next seq (a plain restart would start a new epoch).
        rest = run.publisher(
            sample_video,
            "--pace",
            "fast",
            "--epoch",
            str(summary["epoch"]),
            "--start-seq",
            str(first_run),
            "--max-frames",
            str(250 - first_run),
        )
        assert rest.process.wait(60) == 0
    account = run.account(FRAMES)
    record_row(
        f"SIGTERM {service}",
        {
            "consumer": "finishes in-flight batches, commits, leaves the group",
            "publisher": "stops capture, flushes pending frames, exits 0",
            "inference": "finishes in-flight requests; the consumer retries until the replacement is up",
        }[service],
        account,
    )
    assert account.missing == [], account.context
    if service != "inference":
        assert account.duplicates == 0, "a graceful stop commits all it finished"


MISCONFIGURED = range(40)  # the first 40 frames of bikes.mp4


def test_consumer_pointed_at_a_wrong_path_dead_letters_nothing(run, sample_video, kafka_settings):
    """A wrong CONSUMER_INFERENCE_URL path gets 404 from the real service: an outage (waited out, counted,
    /healthz 503 naming the variable), never "these frames are bad"; restarted with the right URL, every
    frame gets its result."""
    wrong = run.consumer(
        inference_url=f"{run.inference_url}/api",
        CONSUMER_UNHEALTHY_AFTER_S="3",
        CONSUMER_RETRY_MAX_S="1",
    )
    publisher = run.publisher(sample_video, "--pace", "fast", "--max-frames", str(len(MISCONFIGURED)))
    assert publisher.process.wait(60) == 0, publisher.log_tail()
    body = wait_consumer_health(wrong, 503, timeout_s=60)
    assert "HTTP 404" in body["reason"] and "CONSUMER_INFERENCE_URL" in body["reason"], body
    assert consumer_metric(wrong, "consumer_retries_total", dependency="inference", cause="http_404") >= 2
    assert consumer_metric(wrong, "consumer_frames_dead_lettered_total") == 0
    assert "is CONSUMER_INFERENCE_URL right?" in wrong.log_tail(50)
    assert all(o < 0 for o in committed_offsets(kafka_settings, run.group, run.topics.frames, 3)), "nothing committed"
    assert wrong.stop() == 0, wrong.log_tail()

    run.consumer(name="consumer-fixed")
    account = run.account(MISCONFIGURED, timeout_s=120)
    dead = read_all(kafka_settings, run.topics.dead_letter, expect=1, timeout_s=3)
    record_row(
        "consumer pointed at a wrong path",
        "HTTP 404 is an outage: retried with backoff, /healthz 503 naming CONSUMER_INFERENCE_URL, nothing "
        "dead-lettered or committed; restarted with the right URL, every frame gets its result",
        account,
        dead_lettered=len(dead),
    )
    assert dead == [], "a wrong path is no frame's fault"
    assert account.missing == [], account.context
    assert account.duplicates == 0, "nothing was published or committed before"


def test_results_topic_missing_backs_off_rewrites_nothing_and_delivers_once_created(
    kafka_bootstrap, kafka_settings, inference_url, sample_video, tmp_path
):
    """The results topic does not exist (deleted, or never created with TOPICS_CREATE=false): the results
    wait in their batches and are produced again with backoff; /healthz turns 503; no frame is inferred
    twice and no archive object is written twice; once the topic exists every frame gets its result."""
    from tools.harness.results import ResultCollector
    from vidpipe.kafka import ensure_topics
    from vidpipe.topics import TopicSettings

    name = f"missing-{uuid.uuid4().hex[:8]}"
    topics = TopicSettings(frames=f"{name}.frames", results=f"{name}.results", dead_letter=f"{name}.dlq", partitions=3)
    ensure_topics(kafka_settings, [s for s in topics.specs() if s.name != topics.results])
    run = FaultRun(kafka_bootstrap, topics, inference_url, tmp_path)
    archive = tmp_path / "archive"
    try:
        # Neither service may create the topic at start-up (TOPICS_CREATE, the default, would).
        consumer = run.consumer(TOPICS_CREATE="false", CONSUMER_UNHEALTHY_AFTER_S="5", CONSUMER_RETRY_MAX_S="2")
        publisher = run.publisher(
            sample_video, "--pace", "fast", "--max-frames", str(len(MISCONFIGURED)), TOPICS_CREATE="false"
        )
        assert publisher.process.wait(60) == 0, publisher.log_tail()
        body = wait_consumer_health(consumer, 503, timeout_s=120)  # librdkafka fails a record after ~30 s
        assert "results topic unavailable" in body["reason"] and "UNKNOWN_TOPIC_OR_PART" in body["reason"], body
        before = archive_state(archive)
        assert before, "the first batches were archived while their results waited"
        time.sleep(10)  # at least one more round of producing them again
        failures = consumer_metric(consumer, "consumer_delivery_failures_total", topic="results")
        assert failures >= 1
        assert "producing what it did not take again in" in consumer.log_tail(100)

        ensure_topics(kafka_settings, [s for s in topics.specs() if s.name == topics.results])
        run.results.close()  # subscribed while the topic was missing: read it afresh
        run.results = ResultCollector(kafka_bootstrap, topics.results)
        account = run.account(MISCONFIGURED, timeout_s=150)
        wait_consumer_health(consumer, 200, timeout_s=30)
        inferred = consumer_metric(consumer, "consumer_frames_inferred_total")
        dead = consumer_metric(consumer, "consumer_frames_dead_lettered_total")
    finally:
        run.close()
    after = archive_state(archive)
    rewritten = [key for key, state in before.items() if after.get(key) != state]
    record_row(
        "results topic missing",
        "results wait in their batches and are produced again with backoff; /healthz 503 naming the topic; "
        "no frame inferred or archived twice; once the topic exists every frame gets its result",
        account,
        delivery_failures=int(failures),
        frames_inferred=int(inferred),
        archive_objects_rewritten=len(rewritten),
    )
    assert account.missing == [], account.context
    assert account.duplicates == 0
    assert rewritten == [], "no archive object written twice"
    assert inferred == len(MISCONFIGURED) and dead == 0, "each frame inferred once, none dead-lettered"
    results_objects = [k for k in after if k.startswith("results/")]
    seqs = [json.loads(line)["seq"] for k in results_objects for line in (archive / k).read_text().splitlines()]
    assert sorted(seqs) == list(MISCONFIGURED), "each frame's result archived in exactly one object"
