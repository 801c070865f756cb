"""The wiring: from an outputs file (standalone) or from CDK tokens (add_cdk8s_chart)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.k8s.k8s_helpers import ROOT, SAMPLE_OUTPUTS, containers, synthesize
from vidpipe_deploy.registry import registered
from vidpipe_deploy.units import identity_outputs
from vidpipe_deploy.wiring import (
    OutputKeys,
    PlatformWiring,
    WiringError,
    is_token,
    merge_stack_outputs,
    required_output_keys,
)

pytestmark = pytest.mark.infra

TOKEN = "${Token[TOKEN.%d]}"


def outputs() -> dict:
    return merge_stack_outputs(json.loads(SAMPLE_OUTPUTS.read_text()))


def test_outputs_file_round_trips_into_the_manifests(manifests, wiring):
    out = outputs()
    assert wiring.region == out[OutputKeys.REGION]
    assert wiring.kafka_bootstrap == out[OutputKeys.KAFKA_BOOTSTRAP]
    images = {c["image"] for d in manifests.kind("Deployment") for c in containers(d)}
    for unit in registered().all():
        assert out[unit.image_output] in images
    assert manifests.config_map("consumer-service")["CONSUMER_ARCHIVE_URI"] == out[OutputKeys.ARCHIVE_URI]
    assert manifests.config_map("inference-service")["INFERENCE_MODEL_URI"] == out[OutputKeys.MODEL_URI]
    kafka = manifests.config_map("vidpipe-kafka")
    assert kafka["KAFKA_BOOTSTRAP"] == out[OutputKeys.KAFKA_BOOTSTRAP] and kafka["KAFKA_AUTH"] == "msk-iam"
    assert wiring.namespace == out[OutputKeys.NAMESPACE]
    assert wiring.service_account("consumer") == out[identity_outputs(registered().consumer.name)[0]]


# The documented fakes (docs/KUBERNETES.md): AWS's documentation account and example hosts and names.
FAKE_ACCOUNT = "123456789012"
FAKE_DIGITS = {FAKE_ACCOUNT, "000000000000"}  # the fake account; the all-zero MSK cluster UUID
ACCOUNT_ID = re.compile(r"(?<![0-9])\d{12}(?![0-9])")
ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d*):[^\s\"]+")
HOST = re.compile(r"(?<![\w.-])((?:[a-z0-9-]+\.)+(?:com|net|org|io|internal|aws|amazonaws\.com))(?![\w-])")


def _values(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _values(value)
    else:
        yield str(node)


def test_sample_outputs_hold_only_fake_values():
    values = list(_values(json.loads(SAMPLE_OUTPUTS.read_text())))
    text = "\n".join(values)
    assert set(ACCOUNT_ID.findall(text)) <= FAKE_DIGITS, "an account id other than the documented fake"
    for arn in ARN.finditer(text):
        assert arn.group(1) == FAKE_ACCOUNT, f"a real-looking ARN: {arn.group(0)}"
    for host in HOST.findall(text):
        # Hosts are either the documented fake brokers or ECR under the fake account.
        assert ".example." in host or host.startswith(f"{FAKE_ACCOUNT}.dkr.ecr."), f"a real-looking host: {host}"
    buckets = [v for k, v in outputs().items() if k.endswith("BucketName")]
    assert buckets and all(b.startswith("example-") for b in buckets), buckets


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:iam::210987654321:role/ops",  # another account
        "b-1.prod-kafka.c2.kafka.eu-west-1.amazonaws.com:9098",  # a broker that is not example.*
        "555566667777.dkr.ecr.eu-west-1.amazonaws.com/repo:tag",  # another account's registry
    ],
)
def test_the_fake_values_check_catches_real_looking_ones(value):
    text = value
    real = set(ACCOUNT_ID.findall(text)) - FAKE_DIGITS or any(
        ".example." not in h and not h.startswith(f"{FAKE_ACCOUNT}.dkr.ecr.") for h in HOST.findall(text)
    )
    assert real


@pytest.mark.parametrize("missing", required_output_keys())
def test_missing_output_key_is_named(tmp_path, missing):
    document = json.loads(SAMPLE_OUTPUTS.read_text())
    for stack in document.values():
        stack.pop(missing, None)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(document))
    with pytest.raises(WiringError, match=missing) as error:
        PlatformWiring.from_outputs_file(path)
    assert str(path) in str(error.value)


def test_conflicting_outputs_and_bad_files_are_reported(tmp_path):
    with pytest.raises(WiringError, match="Region differs between stacks A and B"):
        merge_stack_outputs({"A": {"Region": "eu-west-1"}, "B": {"Region": "us-east-1"}})
    with pytest.raises(WiringError, match="does not exist"):
        PlatformWiring.from_outputs_file(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(WiringError, match="StackName"):
        PlatformWiring.from_outputs_file(bad)


def test_invalid_output_value_names_the_field(tmp_path):
    document = json.loads(SAMPLE_OUTPUTS.read_text())
    document["VidpipeCompute"]["Region"] = "Ireland"
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(document))
    with pytest.raises(WiringError, match="region: 'Ireland' is not an AWS region"):
        PlatformWiring.from_outputs_file(path)


def token_wiring() -> PlatformWiring:
    """What the CDK compute stack passes: unresolved tokens for everything deploy-time."""
    return PlatformWiring(
        region=TOKEN % 1,
        kafka_bootstrap=TOKEN % 2,
        archive_uri=f"s3://{TOKEN % 3}/archive",
        model_uri=f"s3://{TOKEN % 3}/models/yolov4-tiny.onnx",
        images={"publisher": TOKEN % 4, "consumer": TOKEN % 5, "inference": TOKEN % 6, "analytics": TOKEN % 9},
        keda={"role_arn": TOKEN % 7},
        create_namespace=False,
        streams=[{"id": "lobby", "source": "secret:lobby", "target_fps": 5}],
        api_token_secret_arn=TOKEN % 8,
        rtsp_test_source=True,
    )


def test_token_strings_are_accepted_and_carried_through():
    assert is_token(TOKEN % 1) and not is_token("eu-west-1")
    wiring = token_wiring()
    assert wiring.kafka_ports == [9098], "the broker list is a token: the MSK IAM port is assumed"
    manifests = synthesize(wiring)
    assert set(manifests.charts) == {"vidpipe-workloads", "vidpipe-autoscaling", "vidpipe-jobs"}, (
        "the CDK stack creates the namespace"
    )
    text = json.dumps(manifests.objects)
    for n in range(1, 10):
        assert TOKEN % n in text, f"token {n} lost"
    meta = manifests.get("ScaledObject", "consumer-service")["spec"]["triggers"][0]["metadata"]
    assert meta["bootstrapServers"] == TOKEN % 2 and meta["awsRegion"] == TOKEN % 1
    from cdk8s_app.validate import validate_objects

    assert validate_objects(("tokens", o) for o in manifests.objects) == []


@pytest.mark.parametrize(
    "field,value",
    [
        ("region", "not a region"),
        ("kafka_bootstrap", "no-port-here"),
        ("archive_uri", "/local/folder"),
        ("images", {"publisher": "UPPER CASE", "consumer": "x", "inference": "y", "analytics": "z"}),
        ("keda", {"role_arn": "arn:aws:iam::123456789012:role/r", "identity_owner": "keda"}),
    ],
)
def test_literal_values_are_still_checked(wiring, field, value):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PlatformWiring.model_validate({**wiring.model_dump(), field: value})


def test_standalone_synth_writes_valid_manifests(tmp_path):
    """`python -m cdk8s_app.main` as cdk8s.yaml runs it, then the validator `make k8s` runs."""
    env = {**os.environ, "CDK8S_OUTDIR": str(tmp_path), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20,22"}
    env.pop("VIDPIPE_OUTPUTS_FILE", None)
    subprocess.run([sys.executable, "-m", "cdk8s_app.main"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.glob("*.k8s.yaml")) == [
        "0000-vidpipe-namespace.k8s.yaml",
        "0001-vidpipe-workloads.k8s.yaml",
        "0002-vidpipe-autoscaling.k8s.yaml",
        "0003-vidpipe-jobs.k8s.yaml",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "cdk8s_app.validate", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "0 problem(s)" in result.stdout


def test_standalone_synth_reports_a_missing_key_without_a_traceback(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"Stack": {"Region": "eu-west-1"}}))
    env = {**os.environ, "CDK8S_OUTDIR": str(tmp_path / "out"), "VIDPIPE_OUTPUTS_FILE": str(path)}
    result = subprocess.run([sys.executable, "-m", "cdk8s_app.main"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "KafkaBootstrapBrokersSaslIam" in result.stderr and "Traceback" not in result.stderr
