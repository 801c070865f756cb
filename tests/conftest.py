"""Session-wide fixtures: one real Kafka broker, one inference server, one moto S3 endpoint.

Expensive things start once per session; every test gets its own topics and consumer group so
tests never see each other's records.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import NoReturn

import pytest

from tools.harness.processes import free_port, inference_process
from tools.paths import DEFAULT_MODEL, SAMPLE_VIDEO

ROOT = Path(__file__).resolve().parent.parent


def missing_setup(message: str) -> NoReturn:
    """Set-up is `make test`'s job: a bare pytest run without it skips, CI fails."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_file(path: Path, how: str) -> Path:
    if not path.exists():
        missing_setup(f"{path.relative_to(ROOT)} is missing: run `{how}` (make test does it)")
    return path


@pytest.fixture(scope="session")
def default_model() -> Path:
    return require_file(DEFAULT_MODEL, "make model")


@pytest.fixture(scope="session")
def sample_video() -> Path:
    return require_file(SAMPLE_VIDEO, "make sample")


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory):
    """The project's own broker (None when KAFKA_BOOTSTRAP points at another one)."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield None
        return
    from tools.kafka.broker import LocalBroker

    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), port=0, controller_port=0, die_with_parent=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker) -> str:
    return os.environ.get("KAFKA_BOOTSTRAP") or local_broker.bootstrap


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap):
    from vidpipe.kafka import KafkaSettings

    return KafkaSettings(bootstrap=kafka_bootstrap)


@pytest.fixture
def topics(kafka_settings):
    """Fresh topics for one test, created through the admin API like the services do."""
    from vidpipe.kafka import ensure_topics
    from vidpipe.topics import TopicSettings

    run = uuid.uuid4().hex[:8]
    settings = TopicSettings(
        frames=f"t-{run}.frames", results=f"t-{run}.results", dead_letter=f"t-{run}.dlq", partitions=3
    )
    ensure_topics(kafka_settings, settings.specs())
    return settings


def topic_env(topics) -> dict[str, str]:
    return {
        "TOPICS_FRAMES": topics.frames,
        "TOPICS_RESULTS": topics.results,
        "TOPICS_DEAD_LETTER": topics.dead_letter,
        "TOPICS_PARTITIONS": str(topics.partitions),
    }


@pytest.fixture(scope="session")
def inference_url(default_model, tmp_path_factory):
    port = free_port()
    server = inference_process(port, tmp_path_factory.mktemp("logs"), default_model).start()
    try:
        server.wait_ready(timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto as an HTTP endpoint: service processes reach it through AWS_ENDPOINT_URL_S3."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    fake = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }
    saved = {k: os.environ.get(k) for k in fake}
    os.environ.update(fake)
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint):
    import boto3

    name = f"archive-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name
