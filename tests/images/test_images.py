"""What ships, run as it ships: the three images built from the CDK assets, each container under its
Deployment's security context, resources and environment, with only endpoints made local.

A missing dependency, a file the non-root user cannot read or a write to the read-only root fails
here, as it would in the cluster.
"""

from __future__ import annotations

import re
import uuid

import boto3
import pytest

from tests.conftest import topic_env
from tools.harness.results import ResultCollector
from tools.images.build import image_reference
from tools.images.pod import PodContainer, RunningContainer
from vidpipe.contract import FrameResult

pytestmark = [pytest.mark.images]

MB = 1_000_000
# The budget each image is held to (the inference image will carry a second runtime). Analytics: 358 MB on
# the local base (2026-11-26; scipy and numpy are most of it, no OpenCV): ~25% headroom.
SIZE_BUDGET = {
    "frame-publisher": 400 * MB,
    "consumer-service": 400 * MB,
    "inference-service": 900 * MB,
    "analytics-service": 450 * MB,
}
PACKAGES = {
    "frame-publisher": "frame_publisher",
    "consumer-service": "consumer_service",
    "inference-service": "inference_service",
}
DEPLOYMENTS = {"consumer-service": "consumer-service", "inference-service": "inference-service"}
IMPORT_ALL = (
    "import importlib, pkgutil, sys\n"
    "names = []\n"
    "for top in sys.argv[1:]:\n"
    "    package = importlib.import_module(top)\n"
    "    names += [top] + [m.name for m in pkgutil.walk_packages(package.__path__, top + '.')]\n"
    "for name in names:\n"
    "    importlib.import_module(name)\n"
    "print('imported', len(names))\n"
)


def publisher_deployment(manifests) -> str:
    return next(
        d["metadata"]["name"]
        for d in manifests
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("publisher-")
    )


def secret_refs(manifests, deployment: str, value: str) -> dict[tuple[str, str], str]:
    """The Secrets this Deployment reads, each given `value` (the user creates them in a cluster)."""
    pod = next(d for d in manifests if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment)
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for c in pod["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    return {(ref["name"], ref["key"]): value for ref in refs}


def deployment_of(service: str, manifests) -> str:
    return DEPLOYMENTS.get(service) or publisher_deployment(manifests)


@pytest.mark.parametrize("service", sorted(SIZE_BUDGET))
def test_image_within_size_budget(podman, service):
    size = podman.image_size(image_reference(service))
    assert size <= SIZE_BUDGET[service], f"{service}: {size / MB:.0f} MB > {SIZE_BUDGET[service] / MB:.0f} MB"


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
    podman, pod_manifests, kafka_bootstrap, topics, s3_endpoint, s3_bucket, default_model, sample_video, tmp_path
):
    """Publisher, consumer and inference containers as their pods run them: every frame published gets
    exactly one result and its archive objects, every probe answers 200, each exits 0 on SIGTERM."""
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
    }
    run_id = uuid.uuid4().hex[:6]

    def container(service: str, **overrides: str) -> RunningContainer:
        deployment = deployment_of(service, pod_manifests)
        # The camera URL comes from the Secret the publisher's Deployment names: here, the sample video.
        spec = PodContainer.from_manifests(
            pod_manifests, deployment, secret_refs(pod_manifests, deployment, "/media/sample.mp4")
        )
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
    started: list[RunningContainer] = []
    collector = ResultCollector(kafka_bootstrap, topics.results)
    try:
        started.append(inference.start())
        inference.wait_ready(timeout_s=180)
        consumer = container(
            "consumer-service",
            CONSUMER_INFERENCE_URL=f"http://127.0.0.1:{inference.port_map[8080]}",
            CONSUMER_ARCHIVE_URI=f"s3://{s3_bucket}/archive",
            CONSUMER_GROUP_ID=f"images-{run_id}",
        )
        started.append(consumer.start())
        consumer.wait_ready(timeout_s=90)
        # A file played like a camera, round and round, until the kubelet stops it.
        publisher = container("frame-publisher", PUBLISHER_STREAM_ID="bikes", PUBLISHER_LOOP="true")
        started.append(publisher.start())
        publisher.wait_ready(timeout_s=60)
        assert not collector.wait_for({("bikes", seq) for seq in range(60)}, timeout_s=180, alive=lambda: None), (
            f"no results from the containers:\n{publisher.log_tail()}\n{consumer.log_tail()}"
        )

        for running in started:
            assert {kind: running.probe(kind) for kind in running.probe_urls()} == {
                kind: 200 for kind in running.probe_urls()
            }, running.log_tail()

        assert publisher.terminate() == 0, publisher.log_tail()
        summary = re.search(r"published (\d+) frames of .* \((\d+) delivered", publisher.log_tail())
        assert summary, publisher.log_tail()
        published, delivered = int(summary.group(1)), int(summary.group(2))
        assert published == delivered >= 60
        expected = {("bikes", seq) for seq in range(published)}
        missing = collector.wait_for(expected, timeout_s=180, alive=lambda: None)
        assert not missing, f"{len(missing)} frames without a result:\n{consumer.log_tail()}"
        collector.poll(3)  # late duplicates would arrive now
        assert consumer.terminate() == 0, consumer.log_tail()
        assert inference.terminate() == 0, inference.log_tail()
    finally:
        for running in started:
            running.terminate(timeout_s=40)
        collector.close()

    assert set(collector.results) == expected and collector.duplicates == 0
    for doc in collector.results.values():
        FrameResult.model_validate(doc)  # every result follows the contract

    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix="archive/")
        for o in page.get("Contents", [])
    ]
    assert len([k for k in keys if k.startswith("archive/frames/bikes/")]) == published
    assert any(k.startswith("archive/results/bikes/") for k in keys)
