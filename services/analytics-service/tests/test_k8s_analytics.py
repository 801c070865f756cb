"""The analytics service: its hardened Deployment, its environment from the stack outputs, the streams file
(ConfigMap, mounted read-only, validated at synth), its Service for port-forward, its fixed replica count."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.k8s.k8s_helpers import ROOT, SAMPLE_OUTPUTS, containers, env_of, probe_targets, synthesize
from vidpipe.contract import ANALYTICS_GROUP
from vidpipe_deploy.wiring import OutputKeys, PlatformWiring, WiringError, merge_stack_outputs

pytestmark = pytest.mark.infra

NAME = "analytics-service"
STREAMS_CONFIG = "analytics-streams"


def outputs() -> dict[str, str]:
    return merge_stack_outputs(json.loads(SAMPLE_OUTPUTS.read_text()))


def streams_file(manifests) -> str:
    return manifests.config_map(STREAMS_CONFIG)["streams.yaml"]


def test_deployment_is_hardened_on_the_general_pool(manifests):
    deployment = manifests.get("Deployment", NAME)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "fsGroup": 10001,
        "runAsGroup": 10001,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = containers(deployment)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsGroup": 10001,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["nodeSelector"] == {"vidpipe.io/pool": "general"}
    assert pod["serviceAccountName"] == NAME and pod["automountServiceAccountToken"] is False
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"]["emptyDir"]["sizeLimit"]
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
    assert manifests.get("PodDisruptionBudget", NAME)["spec"]["selector"] == deployment["spec"]["selector"]


def test_probes_hit_healthz_and_readyz_on_the_ops_port(manifests):
    deployment = manifests.get("Deployment", NAME)
    (container,) = containers(deployment)
    env = env_of(manifests, deployment)
    api, ops = int(env["ANALYTICS_PORT"]), int(env["ANALYTICS_OPS_PORT"])
    assert (api, ops) == (8082, 8092)
    assert container["ports"] == [
        {"containerPort": api, "name": "http", "protocol": "TCP"},
        {"containerPort": ops, "name": "ops", "protocol": "TCP"},
    ]
    assert probe_targets(container) == {
        "startupProbe": ("/healthz", ops),
        "readinessProbe": ("/readyz", ops),
        "livenessProbe": ("/healthz", ops),
    }


def test_environment_comes_from_the_outputs_and_the_contract(manifests, wiring):
    out = outputs()
    deployment = manifests.get("Deployment", NAME)
    env = env_of(manifests, deployment)
    assert containers(deployment)[0]["image"] == out["AnalyticsImageUri"]
    # The archive the consumer writes, read for the live view's frames.
    assert env["ANALYTICS_ARCHIVE_URI"] == out[OutputKeys.ARCHIVE_URI]
    assert env["ANALYTICS_ARCHIVE_URI"] == manifests.config_map("consumer-service")["CONSUMER_ARCHIVE_URI"]
    assert env["KAFKA_BOOTSTRAP"] == out[OutputKeys.KAFKA_BOOTSTRAP] and env["KAFKA_AUTH"] == "msk-iam"
    assert env["KAFKA_AWS_REGION"] == out[OutputKeys.REGION]
    assert env["TOPICS_RESULTS"] == wiring.topics.results == "video.results.v1"
    assert env["TOPICS_EVENTS"] == wiring.topics.events == "video.events.v1"
    # The group its IAM grant names; it never creates topics (no CreateTopic grant), the others do.
    assert env["ANALYTICS_GROUP_ID"] == ANALYTICS_GROUP == "video-analytics"
    assert env["TOPICS_CREATE"] == "false"
    assert manifests.config_map("vidpipe-kafka")["TOPICS_CREATE"] == "true"
    assert env["KAFKA_CLIENT_ID"] == NAME


def test_the_analytics_settings_accept_the_environment(manifests, monkeypatch):
    settings = pytest.importorskip("analytics_service.settings", reason="the analytics service is not installed")
    from vidpipe.kafka import KafkaSettings
    from vidpipe.topics import TopicSettings

    env = env_of(manifests, manifests.get("Deployment", NAME))
    for key in list(os.environ):
        if key.split("_")[0] in {"KAFKA", "TOPICS", "ANALYTICS"}:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parsed = settings.AnalyticsSettings()
    assert (parsed.port, parsed.group_id, parsed.archive_uri) == (8082, ANALYTICS_GROUP, outputs()["ArchiveUri"])
    assert TopicSettings().create is False and TopicSettings().events == "video.events.v1"
    KafkaSettings()


def test_streams_file_is_a_read_only_config_map_mount(manifests):
    deployment = manifests.get("Deployment", NAME)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = containers(deployment)
    path = env_of(manifests, deployment)["ANALYTICS_STREAMS_FILE"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] != "tmp"]
    assert mount["readOnly"] is True and path == f"{mount['mountPath']}/streams.yaml"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"] == {"name": STREAMS_CONFIG, "defaultMode": 0o444}
    assert set(manifests.config_map(STREAMS_CONFIG)) == {"streams.yaml"}


def test_streams_file_holds_every_stream_and_the_analytics_section(manifests, wiring, settings):
    document = yaml.safe_load(streams_file(manifests))
    # The test source is on in this fixture: its stream is listed too.
    assert document["streams"] == [{"name": s.name} for s in wiring.all_streams]
    assert {s["name"] for s in document["streams"]} == {"lobby", "loading-dock", "test-source"}
    assert document["analytics"] == {
        "lobby": {
            "lines": [{"name": "entrance", "start": [0.1, 0.6], "end": [0.9, 0.6]}],
            "zones": [{"name": "reception", "polygon": [[0.55, 0.15], [0.95, 0.15], [0.95, 0.55], [0.55, 0.55]]}],
        }
    }
    assert document["analytics"].keys() == settings["analytics"].keys()


def test_the_service_reads_the_streams_file_as_rendered(manifests, tmp_path):
    from vidpipe.analytics_config import load_streams_file

    path = tmp_path / "streams.yaml"
    path.write_text(streams_file(manifests))
    config = load_streams_file(path)
    assert [line.name for line in config.for_stream("lobby").lines] == ["entrance"]
    assert [zone.name for zone in config.for_stream("lobby").zones] == ["reception"]


def test_a_changed_streams_file_rolls_the_pod(manifests, wiring):
    annotations = manifests.get("Deployment", NAME)["spec"]["template"]["metadata"]["annotations"]
    digest = annotations["vidpipe.io/analytics-streams-sha256"]
    assert digest == hashlib.sha256(streams_file(manifests).encode()).hexdigest()
    moved = {"lobby": {"lines": [{"name": "entrance", "start": [0.1, 0.5], "end": [0.9, 0.5]}]}}
    changed = synthesize(wiring.model_copy(update={"analytics": moved}))
    template = changed.get("Deployment", NAME)["spec"]["template"]["metadata"]
    assert template["annotations"]["vidpipe.io/analytics-streams-sha256"] != digest


def test_service_for_port_forward_to_the_live_view(manifests):
    service = manifests.get("Service", "analytics")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8082, "protocol": "TCP", "targetPort": "http"}]
    labels = manifests.get("Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_network_policy_opens_kafka_https_and_credentials_only(manifests):
    policy = manifests.get("NetworkPolicy", NAME)["spec"]
    assert policy["policyTypes"] == ["Egress"] and "ingress" not in policy
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": NAME}}
    rules = {tuple(p["port"] for p in rule["ports"]): rule["to"] for rule in policy["egress"]}
    assert set(rules) == {(9098,), (443,), (80,)}
    assert {peer["ipBlock"]["cidr"] for peer in rules[(80,)]} == {"169.254.170.23/32", "fd00:ec2::23/128"}


def test_replicas_are_a_setting_bounded_by_the_partitions(wiring):
    scaled = synthesize(
        wiring.model_copy(update={"scaling": wiring.scaling.model_copy(update={"analytics_replicas": 3})})
    )
    assert scaled.get("Deployment", NAME)["spec"]["replicas"] == 3
    with pytest.raises(WiringError, match=r"scaling.analytics_replicas \(7\) exceeds topic_partitions \(6\)"):
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {"scaling": {"analytics_replicas": 7}})


def test_kafka_config_names_the_events_topic(manifests, wiring):
    assert manifests.config_map("vidpipe-kafka")["TOPICS_EVENTS"] == wiring.topics.events == "video.events.v1"
    renamed = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {"topics": {"events": "site-a.events.v2"}})
    assert synthesize(renamed).config_map("vidpipe-kafka")["TOPICS_EVENTS"] == "site-a.events.v2"


LOBBY_LINE = {"name": "entrance", "start": [0.1, 0.6], "end": [0.9, 0.6]}
BOWTIE = [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]


@pytest.mark.parametrize(
    "section,key,reason",
    [
        (
            {"lobby": {"lines": [{"name": "entrance", "start": [0.1, 1.2], "end": [0.9, 0.6]}]}},
            "analytics.lobby.lines[0].start",
            "y=1.2 is outside [0, 1]",
        ),
        (
            {"lobby": {"lines": [LOBBY_LINE], "zones": [{"name": "queue", "polygon": BOWTIE}]}},
            "analytics.lobby.zones[0].polygon",
            "intersects itself",
        ),
        ({"garage": {"lines": [LOBBY_LINE]}}, "analytics.garage", "unknown stream"),
        (
            {"lobby": {"zones": [{"name": "queue", "polygon": [[0.1, 0.1], [-0.5, 0.2], [0.3, 0.9]]}]}},
            "analytics.lobby.zones[0].polygon",
            "outside [0, 1]",
        ),
    ],
)
def test_a_bad_analytics_section_is_refused_naming_the_key(settings, section, key, reason):
    with pytest.raises(WiringError) as caught:
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "analytics": section})
    message = str(caught.value)
    assert f"{key}:" in message and reason in message, message


def test_the_test_source_stream_is_a_known_stream_only_when_enabled(settings):
    section = {"test-source": {"lines": [LOBBY_LINE]}}
    with pytest.raises(WiringError, match="analytics.test-source: unknown stream"):
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "analytics": section})
    wiring = PlatformWiring.from_outputs_file(
        SAMPLE_OUTPUTS, {**settings, "analytics": section}, rtsp_test_source={"enabled": True}
    )
    assert "test-source" in yaml.safe_load(streams_file(synthesize(wiring)))["analytics"]


def test_standalone_synth_stops_on_a_bad_section_naming_the_key(tmp_path, settings):
    bad = {**settings, "analytics": {"lobby": {"zones": [{"name": "queue", "polygon": BOWTIE}]}}}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(bad))
    env = {**os.environ, "CDK8S_OUTDIR": str(tmp_path / "out"), "VIDPIPE_K8S_SETTINGS": str(path)}
    env.pop("VIDPIPE_OUTPUTS_FILE", None)
    done = subprocess.run([sys.executable, "-m", "cdk8s_app.main"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "analytics.lobby.zones[0].polygon: the polygon intersects itself" in done.stderr
    assert "Traceback" not in done.stderr and not list((tmp_path / "out").glob("*.yaml"))
