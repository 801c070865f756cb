"""The analytics service on the CDK path: its Deployment in the compute stack's chart with every value from
the stack (never the sample's fakes), its streams file from `vidpipe:streams` and `vidpipe:analytics`, and a
bad analytics section refused at synth naming the context key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from cdk_app.config import ConfigError, load_config
from tests.infra.cdk_support import ANALYTICS, ROOT, chart_objects, find, render_cfn, user_context

pytestmark = pytest.mark.infra

NAME = "analytics-service"


@pytest.fixture(scope="module")
def compute_template(synth) -> dict:
    return synth.templates[synth.platform.compute.stack_name]


@pytest.fixture(scope="module")
def objects(compute_template) -> list[dict]:
    return chart_objects(compute_template)


def test_analytics_environment_is_wired_to_the_stack(objects, compute_template):
    outputs = {k: render_cfn(v["Value"]) for k, v in compute_template["Outputs"].items()}
    env = find(objects, "ConfigMap", NAME)["data"]
    archive = "s3://vidpipe-dev-archive-<AWS::AccountId>-<AWS::Region>/archive"
    assert env["ANALYTICS_ARCHIVE_URI"] == outputs["ArchiveUri"] == archive
    assert (
        env["ANALYTICS_ARCHIVE_URI"] == find(objects, "ConfigMap", "consumer-service")["data"]["CONSUMER_ARCHIVE_URI"]
    )
    assert env["ANALYTICS_GROUP_ID"] == "video-analytics" and env["TOPICS_CREATE"] == "false"
    kafka = find(objects, "ConfigMap", "vidpipe-kafka")["data"]
    assert (
        kafka["KAFKA_BOOTSTRAP"].startswith("<import:vidpipe-dev-data:")
        and "BootstrapBrokers" in kafka["KAFKA_BOOTSTRAP"]
    )
    assert kafka["KAFKA_AWS_REGION"] == "<AWS::Region>" and kafka["TOPICS_EVENTS"] == "video.events.v1"
    pod = find(objects, "Deployment", NAME)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == outputs["AnalyticsImageUri"]
    assert container["image"].startswith("<sub:") and "cdk-hnb659fds-container-assets" in container["image"]
    assert pod["serviceAccountName"] == outputs["AnalyticsServiceServiceAccount"] == NAME
    text = json.dumps([o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == NAME])
    for placeholder in ("${Token[", "example-", "123456789012", "000000000000000000000000000000000000000000"):
        assert placeholder not in text, placeholder


def test_analytics_pods_wait_for_their_identity(synth, compute_template):
    identity = synth.platform.compute.identities[NAME]
    association = compute_template["Resources"][synth.platform.compute.get_logical_id(identity.association)]
    assert association["Properties"]["Namespace"] == "vidpipe" and association["Properties"]["ServiceAccount"] == NAME
    service_account = synth.platform.compute.get_logical_id(identity.manifest.node.default_child)
    workloads = [
        r
        for r in compute_template["Resources"].values()
        if r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
        and NAME in render_cfn(r["Properties"]["Manifest"])
        and "Deployment" in render_cfn(r["Properties"]["Manifest"])
    ]
    assert workloads and all(service_account in w["DependsOn"] for w in workloads)


def test_no_streams_no_lines_or_zones_by_default(objects):
    streams_file = find(objects, "ConfigMap", "analytics-streams")["data"]["streams.yaml"]
    assert yaml.safe_load(streams_file) == {"streams": [], "analytics": {}}
    assert find(objects, "Deployment", NAME)["spec"]["replicas"] == 1
    assert not [o for o in objects if o["kind"] == "ScaledObject" and o["metadata"]["name"] == NAME]


def test_the_streams_file_follows_the_context(with_streams):
    templates, platform = with_streams
    objects = chart_objects(json.loads(templates[platform.compute.stack_name]))
    streams_file = find(objects, "ConfigMap", "analytics-streams")["data"]["streams.yaml"]
    document = yaml.safe_load(streams_file)
    assert document == {"streams": [{"name": "lobby"}, {"name": "yard"}], "analytics": ANALYTICS}
    annotations = find(objects, "Deployment", NAME)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["vidpipe.io/analytics-streams-sha256"] == hashlib.sha256(streams_file.encode()).hexdigest()


# --- configuration: the same section as the charts' `analytics` setting ----------------------------------

STREAMS = [{"id": "lobby"}, {"id": "dock", "port": 8554}]
LINE = {"name": "entrance", "start": [0.1, 0.6], "end": [0.9, 0.6]}


def test_context_accepts_the_analytics_section_as_json_too():
    config = load_config(user_context(**{"vidpipe:streams": STREAMS, "vidpipe:analytics": json.dumps(ANALYTICS)}))
    assert config.analytics == ANALYTICS and config.analytics_replicas == 1
    with_test_source = {"vidpipe:rtspTestSource": "true", "vidpipe:analytics": {"test-source": {"lines": [LINE]}}}
    assert load_config(user_context(**with_test_source)).analytics == {"test-source": {"lines": [LINE]}}


@pytest.mark.parametrize(
    "section,problem",
    [
        (
            {"lobby": {"lines": [{"name": "entrance", "start": [1.5, 0.6], "end": [0.9, 0.6]}]}},
            "vidpipe:analytics.lobby.lines[0].start: x=1.5 is outside [0, 1]",
        ),
        (
            {"lobby": {"zones": [{"name": "queue", "polygon": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]}},
            "vidpipe:analytics.lobby.zones[0].polygon: the polygon intersects itself",
        ),
        ({"garage": {"lines": [LINE]}}, "vidpipe:analytics.garage: unknown stream (configured: dock, lobby)"),
        ({"test-source": {"lines": [LINE]}}, "vidpipe:analytics.test-source: unknown stream"),
    ],
)
def test_a_bad_section_names_the_context_key(section, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(user_context(**{"vidpipe:streams": STREAMS, "vidpipe:analytics": section}))
    assert f"context key {problem}" in str(caught.value)


def test_analytics_replicas_are_bounded_by_the_partitions():
    config = load_config(user_context(**{"vidpipe:analyticsReplicas": "3"}))
    assert config.analytics_replicas == 3
    with pytest.raises(ConfigError, match=r"vidpipe:analyticsReplicas \(7\) exceeds vidpipe:topics.partitions \(6\)"):
        load_config(user_context(**{"vidpipe:analyticsReplicas": 7}))


def test_the_cdk_wiring_carries_section_and_replicas_to_the_charts():
    from cdk_app.workloads import WorkloadInputs, build_wiring
    from tests.k8s.k8s_helpers import synthesize
    from vidpipe_deploy.registry import registered

    context = {"vidpipe:streams": STREAMS, "vidpipe:analytics": ANALYTICS, "vidpipe:analyticsReplicas": 2}
    inputs = WorkloadInputs(
        kafka_bootstrap="${Token[TOKEN.1]}",
        archive_uri="s3://${Token[TOKEN.2]}/archive",
        model_uri="s3://${Token[TOKEN.2]}/models/m.onnx",
        images={unit.role: "${Token[TOKEN.3]}" for unit in registered().all()},
        vpc_cidr="${Token[TOKEN.4]}",
        services=registered(),
    )
    manifests = synthesize(build_wiring(load_config(user_context(**context)), inputs))
    assert manifests.get("Deployment", NAME)["spec"]["replicas"] == 2
    streams_file = yaml.safe_load(manifests.config_map("analytics-streams")["streams.yaml"])
    assert streams_file["analytics"] == ANALYTICS and [s["name"] for s in streams_file["streams"]] == ["lobby", "dock"]


def test_cdk_synth_stops_on_a_bad_section_without_a_traceback(tmp_path):
    """`python app.py` as the CDK CLI runs it (context in CDK_CONTEXT_JSON)."""
    context = user_context(
        **{"vidpipe:streams": STREAMS, "vidpipe:analytics": {"lobby": {"zones": [{"name": "q", "polygon": [[0, 0]]}]}}}
    )
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "context key vidpipe:analytics.lobby.zones[0].polygon:" in done.stderr
    assert "Traceback" not in done.stderr
