"""What ships, run as it ships: the four images built from the CDK assets, each container under its
Deployment's security context, resources, environment and volumes, with only endpoints made local.

A missing dependency, a file the non-root user cannot read or a write to the read-only root fails
here, as it would in the cluster.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
import uuid

import boto3
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from inference_service.cpu import bf16_flags
from tests.analytics_support import analytics_topics, get_json, http, wait_for
from tests.fixtures.pipeline import topic_env
from tests.helpers import read_all
from tools.harness.results import ResultCollector
from tools.images.build import image_reference
from tools.images.pod import PodContainer, RunningContainer
from vidpipe.contract import FrameResult, TrackerReset, decode_event
from vidpipe.kafka import KafkaSettings, consumer_config, ensure_topics
from vidpipe.registry_client import RegistryWriter
from vidpipe.storage import frame_key
from vidpipe.stream_registry import parse_streams
from vidpipe.stream_status import decode_status
from vidpipe.topics import TopicSettings
from vidpipe_deploy.facts import CAMERA_SECRET
from vidpipe_deploy.registry import SERVICES_DIR, registered

TOKEN = "images-test-token-" + "0123456789abcdef"

pytestmark = [pytest.mark.images]

MB = 1_000_000
# Each service's image, its budget (its deploy unit's) and its package (its pyproject's), from its room.
SIZE_BUDGET = {unit.name: unit.image_budget_mb * MB for unit in registered().all()}
PACKAGES = {
    unit.name: tomllib.loads((SERVICES_DIR / unit.name / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ][0]
    for unit in registered().all()
}
DEPLOYMENTS = {
    "frame-publisher": "frame-publisher",
    "consumer-service": "consumer-service",
    "inference-service": "inference-service",
    "analytics-service": "analytics-service",
}
# The contract's modules that only some services use, with the distribution they need: the API services
# (inference, analytics) declare fastapi; the others' images do not carry it, nor import these.
API_ONLY = {"vidpipe.http_api": "fastapi"}
IMPORT_ALL = (
    "import importlib, importlib.util, pkgutil, sys\n"
    f"api_only = {API_ONLY!r}\n"
    "names = []\n"
    "for top in sys.argv[1:]:\n"
    "    package = importlib.import_module(top)\n"
    "    names += [top] + [m.name for m in pkgutil.walk_packages(package.__path__, top + '.')]\n"
    "for name in names:\n"
    "    if name in api_only and importlib.util.find_spec(api_only[name]) is None:\n"
    "        continue\n"
    "    importlib.import_module(name)\n"
    "print('imported', len(names))\n"
)


def secret_refs(manifests, deployment: str, value: str) -> dict[tuple[str, str], str]:
    """The Secrets this Deployment reads, each given `value` (the user creates them in a cluster)."""
    pod = next(d for d in manifests if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment)
    refs = [
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for c in pod["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    refs += [
        (v["secret"]["secretName"], item["key"])
        for v in pod["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in v
        for item in v["secret"].get("items", [])
    ]
    return dict.fromkeys(refs, value)


def deployment_of(service: str, manifests) -> str:
    return DEPLOYMENTS[service]


def seeded(manifests, stream: str) -> dict:
    """A stream of the charts' registry seed (its ConfigMap), as a definition document."""
    (seed,) = [d for d in manifests if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("stream-registry")]
    return parse_streams(yaml.safe_load(seed["data"]["streams.yaml"]))[stream].document()


def seed_job_container(podman, manifests, url: str, name: str, folder, env: dict[str, str]) -> RunningContainer:
    """The registry seed Job's container, run as its pod runs it, against `url`, with the API token given as
    VIDPIPE_API_TOKEN instead of its Secrets Manager ARN (nothing else of its command line changes)."""
    (job,) = [d for d in manifests if d["kind"] == "Job"]
    # PodContainer resolves a Deployment's pod: the Job's pod template is one.
    as_deployment = {"kind": "Deployment", "metadata": job["metadata"], "spec": {"template": job["spec"]["template"]}}
    spec = PodContainer.from_manifests([*manifests, as_deployment], job["metadata"]["name"])
    command = spec.container["command"] + spec.container["args"]
    assert command[command.index("--url") + 1].startswith("http://analytics."), command
    command[command.index("--url") + 1] = url
    arn = command.index("--token-secret-arn")
    del command[arn : arn + 2]
    return RunningContainer(
        podman,
        spec,
        image_reference("analytics-service"),
        name,
        folder / f"{name}.log",
        overrides={**env, "VIDPIPE_API_TOKEN": TOKEN},
        entrypoint=command,
    )


def stopped_status(settings: KafkaSettings, topic: str, stream: str, timeout_s: float = 60.0):
    """The stream's `stopped` status, once its publisher has written it."""

    def stopped(record) -> bool:
        status = decode_status(record.key(), record.value())[1]
        return status is not None and status.stream_id == stream and status.state == "stopped"

    records = read_all(settings, topic, expect=0, timeout_s=timeout_s, until=lambda found: any(map(stopped, found)))
    (status,) = [decode_status(r.key(), r.value())[1] for r in records if stopped(r)][-1:]
    return status


def all_records(settings: KafkaSettings, topic: str, partitions: int) -> list:
    """Every record of the topic now (its high watermarks), so reading stops without a timeout."""
    probe = Consumer(consumer_config(settings, f"watermarks-{uuid.uuid4().hex[:6]}"))
    try:
        total = sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        probe.close()
    return read_all(settings, topic, expect=total, timeout_s=60)


@pytest.mark.parametrize("service", sorted(SIZE_BUDGET))
def test_image_within_size_budget(podman, service):
    size = podman.image_size(image_reference(service))
    assert size <= SIZE_BUDGET[service], f"{service}: {size / MB:.0f} MB > {SIZE_BUDGET[service] / MB:.0f} MB"


# Every distribution the image's Python sees: name, version, and whether pip installed it (the base image's
# own packaging tools, and Debian's in the local base, are not the lock's).
INSTALLED = (
    "import importlib.metadata as m, json\n"
    "print(json.dumps([[d.metadata['Name'], d.version, (d.read_text('INSTALLER') or '').strip()]"
    " for d in m.distributions()]))\n"
)
BASE_TOOLS = {"pip", "setuptools", "wheel", "packaging"}  # the official image has wheel, which needs packaging


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_image_holds_exactly_its_lock(podman, service):
    """What ships is what was locked: each pinned distribution at its version, the packages themselves, and
    nothing else but the base image's own packaging tools (the build backend stays in the build stage)."""
    from packaging.utils import canonicalize_name

    from tests.unit.test_lock import ROOT, parse_lock

    lock = parse_lock((ROOT / "services" / service / "requirements.lock").read_text())
    out = podman.run(
        "run", "--rm", "--network", "none", "--entrypoint", "python", image_reference(service), "-c", INSTALLED
    ).stdout
    installed = [(canonicalize_name(name), version, by) for name, version, by in json.loads(out)]
    visible = {}
    for name, version, _ in installed:  # importlib.metadata's order: the first on sys.path wins
        visible.setdefault(name, version)
    assert {name: visible.get(name) for name in lock} == {name: pin.version for name, pin in lock.items()}
    ours = {"vidpipe", f"vidpipe-{service}"}
    assert ours <= set(visible)
    extra = {name for name, _, by in installed if by == "pip"} - set(lock) - ours - BASE_TOOLS
    assert not extra, f"installed but not locked: {sorted(extra)}"


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_every_module_imports_under_the_pod_security_context(podman, pod_manifests, service, tmp_path):
    deployment = deployment_of(service, pod_manifests)
    spec = PodContainer.from_manifests(pod_manifests, deployment, secret_refs(pod_manifests, deployment, "unused"))
    run = RunningContainer(
        podman,
        spec,
        image_reference(service),
        f"imports-{service}-{uuid.uuid4().hex[:6]}",
        tmp_path / "imports.log",
        entrypoint=["python", "-c", IMPORT_ALL, "vidpipe", PACKAGES[service]],
    )
    assert run.start().process.wait(120) == 0, run.log_tail()
    assert re.search(r"imported \d+", run.log_tail()), run.log_tail()


@pytest.mark.broker
@pytest.mark.model
def test_containerized_pipeline_every_frame_one_result_probes_and_clean_stops(
    podman,
    pod_manifests,
    kafka_bootstrap,
    kafka_settings,
    s3_endpoint,
    s3_bucket,
    default_model,
    sample_video,
    tmp_path,
):
    """Publisher, consumer, inference and analytics containers as their pods run them, the publisher in registry
    mode carrying the chart's seeded `lobby` stream (its source a key of the mounted camera Secret, holding the
    sample video's path, looped) and the analytics service following the same registry: every frame published
    gets exactly one result and its archive objects; the analytics service analyzes every result, publishes the
    stream's tracker_reset "start" to the events topic, lists the stream and serves its archived frame from S3 and
    the live view page; every probe answers 200, each container exits 0 on SIGTERM."""
    topics = analytics_topics(kafka_settings)  # all four, events included: the analytics pod creates none
    run_id = uuid.uuid4().hex[:6]
    # This run's own registry and status topics on the shared broker.
    registry = TopicSettings(
        streams=f"t-{run_id}.streams", streams_status=f"t-{run_id}.status", streams_partitions=3, partitions=3
    )
    ensure_topics(
        kafka_settings, [spec for spec in registry.specs() if spec.name in (registry.streams, registry.streams_status)]
    )
    s3 = boto3.client("s3")
    model_key = "models/yolov4-tiny.onnx"
    s3.upload_file(str(default_model), s3_bucket, model_key)  # as the CDK app's model artifact does
    local = {  # endpoints and credentials only: everything else is the manifests'
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAFKA_AUTH": "none",
        "KAFKA_TLS": "false",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **topic_env(topics),
        "TOPICS_EVENTS": topics.events,
        "TOPICS_STREAMS": registry.streams,
        "TOPICS_STREAMS_STATUS": registry.streams_status,
        "TOPICS_STREAMS_PARTITIONS": str(registry.streams_partitions),
        # The charts read the API token from Secrets Manager; here the same token is given directly.
        "INFERENCE_API_TOKEN_SECRET_ARN": "",
        "ANALYTICS_API_TOKEN_SECRET_ARN": "",
        "CONSUMER_INFERENCE_TOKEN_SECRET_ARN": "",
        "INFERENCE_API_TOKEN": TOKEN,
        "ANALYTICS_API_TOKEN": TOKEN,
        "CONSUMER_INFERENCE_TOKEN": TOKEN,
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # A stream added at runtime, before the seed runs: the seed Job applies without pruning, so it stays.
    writer = RegistryWriter(kafka_settings, registry.streams)
    writer.put(parse_streams({"streams": [{"id": "yard", "source": "secret:yard", "enabled": False}]})["yard"])
    # The chart's lobby, its camera a file played like one, round and round: `secret:lobby` is the key `lobby` of
    # the camera Secret, which holds the mounted sample's path.
    lobby = {**seeded(pod_manifests, "lobby"), "loop": True}
    assert lobby["source"] == "secret:lobby" and lobby["lines"] and lobby["zones"]
    camera_secret = {(CAMERA_SECRET, "lobby"): "/media/sample.mp4"}

    def container(service: str, **overrides: str) -> RunningContainer:
        deployment = deployment_of(service, pod_manifests)
        secrets = camera_secret if service == "frame-publisher" else secret_refs(pod_manifests, deployment, "unused")
        spec = PodContainer.from_manifests(pod_manifests, deployment, secrets)
        return RunningContainer(
            podman,
            spec,
            image_reference(service),
            f"{service}-{run_id}",
            tmp_path / f"{service}.log",
            overrides={**local, **overrides},
            volumes=[f"{sample_video}:/media/sample.mp4:ro"] if service == "frame-publisher" else [],
        )

    inference = container("inference-service", INFERENCE_MODEL_URI=f"s3://{s3_bucket}/{model_key}")
    # It follows this run's registry; its group is its own on the shared broker.
    analytics = container(
        "analytics-service",
        ANALYTICS_ARCHIVE_URI=f"s3://{s3_bucket}/archive",
        ANALYTICS_GROUP_ID=f"images-analytics-{run_id}",
    )
    started: list[RunningContainer] = []
    collector = ResultCollector(kafka_bootstrap, topics.results)
    try:
        started.append(inference.start())
        started.append(analytics.start())  # starts while the model loads: it only needs the broker
        inference.wait_ready(timeout_s=180)
        # No verdict lies beside the uploaded model: on a bf16 CPU the pod measured one on the clip its image
        # ships before it reported ready; elsewhere it serves f32 and says why.
        runtime = get_json(f"http://127.0.0.1:{inference.port_map[8080]}/v1/model", auth)["runtime"]
        if bf16_flags():
            # One serving process measured it; the others read its verdict from the pod's cache.
            assert runtime["accuracy_gate"]["source"] in ("startup", "cache"), runtime
            assert runtime["accuracy_gate"]["video"] == "calibration.mp4", runtime
        else:
            assert runtime["precision"] == "f32" and "no AMX-BF16" in runtime["precision_reason"], runtime
        analytics.wait_ready(timeout_s=120)

        # The registry seed Job's pod as the charts render it (the analytics image, the seed ConfigMap mounted
        # read-only, the Job's security context), its command line pointed at this analytics container, with the
        # token given directly instead of the Secrets Manager ARN. Retried as the Job controller would.
        base = f"http://127.0.0.1:{analytics.port_map[8082]}"
        for attempt in range(5):
            seed = seed_job_container(podman, pod_manifests, base, f"seed-{run_id}-{attempt}", tmp_path, local)
            if seed.start().process.wait(120) == 0:
                break
            time.sleep(3)
        else:
            raise AssertionError(f"the seed Job failed:\n{seed.log_tail()}")
        assert re.search(r"\+ lobby \(added\)", seed.log_tail()) and "- yard" not in seed.log_tail(), seed.log_tail()
        registered = {s["id"]: s for s in get_json(f"{base}/api/registry/streams", auth)["streams"]}
        assert set(registered) == {"lobby", "loading-dock", "yard"}, "the seed's streams, and yard kept"
        assert registered["lobby"]["definition"] == seeded(pod_manifests, "lobby")
        # This run's cameras: lobby looped; loading-dock has no key in the camera Secret here.
        writer.put(parse_streams({"streams": [lobby]})["lobby"])
        dock = {**seeded(pod_manifests, "loading-dock"), "enabled": False}
        writer.put(parse_streams({"streams": [dock]})["loading-dock"])

        consumer = container(
            "consumer-service",
            CONSUMER_INFERENCE_URL=f"http://127.0.0.1:{inference.port_map[8080]}",
            CONSUMER_ARCHIVE_URI=f"s3://{s3_bucket}/archive",
            CONSUMER_GROUP_ID=f"images-{run_id}",
        )
        started.append(consumer.start())
        consumer.wait_ready(timeout_s=90)
        # A member of this run's own publisher group, carrying what the registry holds: lobby.
        publisher = container("frame-publisher", PUBLISHER_GROUP_ID=f"images-publishers-{run_id}")
        started.append(publisher.start())
        publisher.wait_ready(timeout_s=60)
        assert not collector.wait_for({("lobby", seq) for seq in range(60)}, timeout_s=180, alive=lambda: None), (
            f"no results from the containers:\n{publisher.log_tail()}\n{consumer.log_tail()}"
        )

        for running in started:
            assert {kind: running.probe(kind) for kind in running.probe_urls()} == {
                kind: 200 for kind in running.probe_urls()
            }, running.log_tail()

        # Disabled in the registry: the pod stops the stream, flushes its frames and says how many it published.
        writer.put(parse_streams({"streams": [{**lobby, "enabled": False}]})["lobby"])
        status = stopped_status(kafka_settings, registry.streams_status, "lobby")
        published = status.frames_published
        assert published >= 60 and status.pod, status
        frames = all_records(kafka_settings, topics.frames, topics.partitions)
        assert len([r for r in frames if r.key() == b"lobby"]) == published, "every published frame delivered"
        assert publisher.terminate() == 0, publisher.log_tail()
        expected = {("lobby", seq) for seq in range(published)}
        missing = collector.wait_for(expected, timeout_s=180, alive=lambda: None)
        assert not missing, f"{len(missing)} frames without a result:\n{consumer.log_tail()}"
        collector.poll(3)  # late duplicates would arrive now

        # The live view as a user opens it: every result analyzed, the latest frame from the S3 archive.
        listed = wait_for(  # a RunningContainer answers running, name and log_tail() like a process
            lambda: [s for s in get_json(f"{base}/api/streams", auth)["streams"] if s["frames"] == published],
            "every result in /api/streams",
            analytics,
        )
        latest = get_json(f"{base}/api/streams/lobby/latest", auth)
        frame = http(base + latest["frame_url"], headers=auth)
        page = http(f"{base}/", headers=auth)
        refused = http(f"{base}/api/streams")  # no token
        assert analytics.terminate() == 0, analytics.log_tail()
        assert consumer.terminate() == 0, consumer.log_tail()
        assert inference.terminate() == 0, inference.log_tail()
    finally:
        for running in started:
            running.terminate(timeout_s=40)
        collector.close()
        writer.close()

    assert set(collector.results) == expected and collector.duplicates == 0
    for doc in collector.results.values():
        FrameResult.model_validate(doc)  # every result follows the contract

    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix="archive/")
        for o in page.get("Contents", [])
    ]
    assert len([k for k in keys if k.startswith("archive/frames/lobby/")]) == published
    assert any(k.startswith("archive/results/lobby/") for k in keys)

    # Analytics: the stream is the registry's lobby (the analytics pod analyzes only the registry's streams), so
    # the events are its tracker resets and whatever the sample video's boxes cause on lobby's line and zone;
    # each follows the contract, and the first is the stream's start.
    assert [s["stream_id"] for s in listed] == ["lobby"]
    events = [(r.key(), decode_event(r.value())) for r in all_records(kafka_settings, topics.events, topics.partitions)]
    assert events and {key for key, _ in events} == {b"lobby"}, events
    first = events[0][1]
    assert isinstance(first, TrackerReset) and first.reason == "start" and first.seq == 0, events[:3]
    status, headers, body = frame
    archived = s3.get_object(
        Bucket=s3_bucket, Key=f"archive/{frame_key('lobby', latest['epoch'], latest['capture_ts_us'], latest['seq'])}"
    )
    assert (status, headers["content-type"]) == (200, "image/jpeg") and body == archived["Body"].read()
    status, headers, body = page
    assert status == 200 and headers["content-type"].startswith("text/html") and b"/live/live.js" in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert refused[0] == 401
