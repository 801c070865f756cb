"""The analytics service on the CDK path: its Deployment in the compute stack's chart with every value from
the stack (never the sample's fakes), the registry seed from `vidpipe:streams` (lines and zones inline) in the
jobs chart, applied by a Job under its own identity, and a bad seed refused at synth naming the context key."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from cdk_app.config import ConfigError, load_config
from tests.infra.cdk_support import (
    LOBBY_LINES,
    LOBBY_ZONES,
    ROOT,
    STREAMS,
    chart_objects,
    find,
    render_cfn,
    user_context,
)

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


def seed(objects: list[dict]) -> list[dict]:
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("stream-registry")]
    return yaml.safe_load(config["data"]["streams.yaml"])["streams"]


def test_no_streams_by_default_and_no_streams_file(objects):
    assert seed(objects) == []
    assert not [o for o in objects if o["metadata"]["name"] == "analytics-streams"]
    assert find(objects, "Deployment", NAME)["spec"]["replicas"] == 1
    assert not [o for o in objects if o["kind"] == "ScaledObject" and o["metadata"]["name"] == NAME]


def test_the_seed_follows_the_context_in_the_jobs_own_chart(with_streams, synth):
    templates, platform = with_streams
    template = json.loads(templates[platform.compute.stack_name])
    objects = chart_objects(template)
    assert [(s["id"], s["source"], s["lines"], s["zones"]) for s in seed(objects)] == [
        (s["id"], s["source"], s.get("lines", []), s.get("zones", [])) for s in STREAMS
    ]
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "stream-registry-seed"
    # Its own manifest, applied after the workloads: re-applied only when the seed or how it runs changes.
    manifests = {
        k: r
        for k, r in template["Resources"].items()
        if r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource" and '\\"kind\\":\\"Job\\"' in json.dumps(r)
    }
    ((key, resource),) = manifests.items()
    text = render_cfn(resource["Properties"]["Manifest"])
    assert "Deployment" not in text and "ScaledObject" not in text
    workloads = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "Custom::AWSCDK-EKS-KubernetesResource" and "analytics-service" in json.dumps(r) and k != key
    ]
    assert set(workloads) <= set(resource["DependsOn"])
    identity = platform.compute.identities["stream-registry-seed"]
    assert platform.compute.get_logical_id(identity.manifest.node.default_child) in resource["DependsOn"]
    # The same Job on the session's synth (no seed): a seed change is a new Job name.
    (plain,) = [o for o in chart_objects(synth.templates[synth.platform.compute.stack_name]) if o["kind"] == "Job"]
    assert plain["metadata"]["name"] != job["metadata"]["name"]


# --- configuration: the same seed as the charts' `streams` setting ----------------------------------------

LINE = {"name": "entrance", "start": [0.1, 0.6], "end": [0.9, 0.6]}


def test_context_accepts_the_seed_as_json_too():
    config = load_config(user_context(**{"vidpipe:streams": json.dumps(STREAMS)}))
    assert [s.id for s in config.streams] == ["lobby", "yard"] and config.analytics_replicas == 1
    lobby = config.streams[0]
    assert [line.model_dump(mode="json") for line in lobby.lines] == LOBBY_LINES
    assert [zone.model_dump(mode="json") for zone in lobby.zones] == LOBBY_ZONES


@pytest.mark.parametrize(
    "stream,problem",
    [
        (
            {"lines": [{"name": "entrance", "start": [1.5, 0.6], "end": [0.9, 0.6]}]},
            "vidpipe:streams[lobby].lines[0].start: x=1.5 is outside [0, 1]",
        ),
        (
            {"zones": [{"name": "queue", "polygon": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]},
            "vidpipe:streams[lobby].zones[0].polygon: the polygon intersects itself",
        ),
        ({"lines": [LINE, LINE]}, "vidpipe:streams[lobby]"),
        ({"source": "secret:not a key"}, "vidpipe:streams[lobby].source"),
    ],
)
def test_a_bad_seed_names_the_context_key(stream, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(user_context(**{"vidpipe:streams": [{"id": "lobby", "source": "secret:lobby", **stream}]}))
    assert f"context key {problem}" in str(caught.value)


def test_analytics_replicas_are_bounded_by_the_partitions():
    config = load_config(user_context(**{"vidpipe:analyticsReplicas": "3"}))
    assert config.analytics_replicas == 3
    with pytest.raises(ConfigError, match=r"vidpipe:analyticsReplicas \(7\) exceeds vidpipe:topics.partitions \(6\)"):
        load_config(user_context(**{"vidpipe:analyticsReplicas": 7}))


def test_the_cdk_wiring_carries_the_seed_and_replicas_to_the_charts():
    from cdk_app.workloads import WorkloadInputs, build_wiring
    from tests.k8s.k8s_helpers import synthesize
    from vidpipe_deploy.registry import registered

    context = {"vidpipe:streams": STREAMS, "vidpipe:analyticsReplicas": 2, "vidpipe:publisherStreamsPerPod": 10}
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
    streams = yaml.safe_load(
        next(iter(c["data"] for c in manifests.kind("ConfigMap") if "streams.yaml" in c["data"]))["streams.yaml"]
    )["streams"]
    assert [s["id"] for s in streams] == ["lobby", "yard"] and streams[0]["lines"] == LOBBY_LINES
    trigger = manifests.get("ScaledObject", "frame-publisher")["spec"]["triggers"][0]
    assert trigger["metadata"]["targetValue"] == "10"


def test_cdk_synth_stops_on_a_bad_seed_without_a_traceback(tmp_path):
    """`python app.py` as the CDK CLI runs it (context in CDK_CONTEXT_JSON)."""
    context = user_context(
        **{
            "vidpipe:streams": [
                {"id": "lobby", "source": "secret:lobby", "zones": [{"name": "q", "polygon": [[0, 0]]}]}
            ]
        }
    )
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "context key vidpipe:streams[lobby].zones[0].polygon:" in done.stderr
    assert "Traceback" not in done.stderr
