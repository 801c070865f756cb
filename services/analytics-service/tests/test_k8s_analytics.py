"""The analytics service: its hardened Deployment, its environment from the stack outputs, the stream registry
it follows (lines and zones live, no streams file), its Service for port-forward and KEDA's count, its fixed
replica count; and the registry seed (validated at synth) applied by a run-once Job through its control API."""

from __future__ import annotations

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
SEED = "stream-registry-seed"


def outputs() -> dict[str, str]:
    return merge_stack_outputs(json.loads(SAMPLE_OUTPUTS.read_text()))


def seed_job(manifests) -> dict:
    (job,) = manifests.kind("Job")
    return job


def seed_file(manifests) -> str:
    (config,) = [c for c in manifests.kind("ConfigMap") if c["metadata"]["name"].startswith(f"{SEED}-")]
    return config["data"]["streams.yaml"]


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


def test_lines_and_zones_come_from_the_registry_not_a_file(manifests):
    deployment = manifests.get("Deployment", NAME)
    env = env_of(manifests, deployment)
    assert env["ANALYTICS_REGISTRY"] == "true" and "ANALYTICS_STREAMS_FILE" not in env
    assert env["TOPICS_STREAMS"] == "video.streams.v1" and env["TOPICS_STREAMS_STATUS"] == "video.streams.status.v1"
    (container,) = containers(deployment)
    assert [m["name"] for m in container["volumeMounts"]] == ["tmp"], "no streams file mounted"
    assert not [c for c in manifests.kind("ConfigMap") if c["metadata"]["name"] == "analytics-streams"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert not [a for a in annotations if "streams" in a], "a seed change never rolls the analytics pods"


def test_the_seed_is_the_settings_streams_in_the_registrys_format(manifests, wiring, settings):
    from vidpipe.stream_registry import parse_streams

    document = yaml.safe_load(seed_file(manifests))
    seeded = parse_streams(document)  # what the CLI and the control API validate it with
    # The test source is on in this fixture: its stream is seeded too.
    assert list(seeded) == ["lobby", "loading-dock", "test-source"]
    assert [seeded[s["id"]] for s in settings["streams"]] == list(parse_streams(settings["streams"]).values())
    assert document["streams"] == [d.document() for d in seeded.values()], "whole, as the registry holds them"
    lobby = seeded["lobby"]
    assert (lobby.source, [x.name for x in lobby.lines], [z.name for z in lobby.zones]) == (
        "secret:lobby",
        ["entrance"],
        ["reception"],
    )
    assert seeded["test-source"].source == wiring.test_source_url


def test_the_seed_job_applies_the_seed_through_the_control_api_without_pruning(manifests, wiring):
    from vidpipe.streams import parser

    job = seed_job(manifests)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == outputs()["AnalyticsImageUri"], "the analytics image: it holds the CLI"
    assert container["command"] == ["python", "-m", "vidpipe.streams"]
    args = parser().parse_args(container["args"])  # the CLI's own parser takes the Job's command line
    assert (args.command, args.file, args.no_prune, args.dry_run) == ("apply", "/seed/streams.yaml", True, False)
    assert args.url == f"http://analytics.{wiring.namespace}.svc:8082"
    assert args.token_secret_arn == wiring.api_token_secret_arn and args.token_file is None
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/seed"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (config,) = [c for c in manifests.kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]]
    assert config["immutable"] is True and set(config["data"]) == {"streams.yaml"}
    assert mount["readOnly"] is True
    spec = job["spec"]
    assert spec["backoffLimit"] >= 6, "the analytics API may come up minutes after the Job starts"
    assert spec["ttlSecondsAfterFinished"] > 0 and pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == SEED and pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"vidpipe.io/pool": "general"}
    assert "env" not in container and "envFrom" not in container


def test_the_seed_job_is_named_after_what_it_applies(wiring, settings):
    """A changed seed is a new Job (it runs once); the same seed is the same Job (a re-apply changes nothing);
    a new analytics image is a new Job too, since a Job's pod template cannot change."""
    names = lambda m: (seed_job(m)["metadata"]["name"], seed_job(m)["spec"]["template"]["spec"]["volumes"][1])  # noqa: E731
    first, again = synthesize(wiring), synthesize(wiring.model_validate(wiring.model_dump()))
    assert names(first) == names(again)
    job, volume = names(first)
    assert job.startswith(f"{SEED}-") and volume["configMap"]["name"].startswith(f"{SEED}-")
    streams = [*settings["streams"], {"id": "gate", "source": "secret:gate", "enabled": False}]
    changed = names(synthesize(wiring.model_validate({**wiring.model_dump(), "streams": streams})))
    assert changed[0] != job and changed[1] != volume
    images = {**wiring.images, "analytics": wiring.images["analytics"].rpartition(":")[0] + ":" + "e" * 64}
    rebuilt = names(synthesize(wiring.model_validate({**wiring.model_dump(), "images": images})))
    assert rebuilt[0] != job and rebuilt[1] == volume, "the same seed, a new Job"


def test_the_seed_job_reaches_the_analytics_api_and_secrets_manager_only(manifests, wiring):
    policy = manifests.get("NetworkPolicy", SEED)["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": SEED}}
    assert policy["policyTypes"] == ["Egress"]
    rules = {tuple(p["port"] for p in rule["ports"]): rule["to"] for rule in policy["egress"]}
    assert rules == {
        (8082,): [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": NAME}}}],
        (443,): [{"ipBlock": {"cidr": wiring.vpc_cidr}}],
        (80,): [{"ipBlock": {"cidr": "169.254.170.23/32"}}, {"ipBlock": {"cidr": "fd00:ec2::23/128"}}],
    }


def test_without_secrets_manager_the_token_is_a_kubernetes_secret_file(settings, tmp_path):
    """The standalone path without ApiTokenSecretArn: the Secret api_token_secret_name (key token) mounted as a
    file into the analytics pod (ANALYTICS_API_TOKEN_FILE), the services that check or send it, and the seed Job
    (--token-file); no HTTPS or credentials for the Job."""
    from vidpipe.streams import parser

    named = {**settings, "api_token_secret_name": "vidpipe-api-token"}
    assert PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, named).api_token_file_secret is None, (
        "Secrets Manager wins where the outputs have it"
    )
    document = json.loads(SAMPLE_OUTPUTS.read_text())
    document["VidpipeCompute"].pop("ApiTokenSecretArn")
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(document))
    plain = PlatformWiring.from_outputs_file(outputs_file, named)
    manifests = synthesize(plain)
    volume = {
        "name": "api-token",
        "secret": {
            "secretName": "vidpipe-api-token",
            "items": [{"key": "token", "path": "token"}],
            "defaultMode": 0o440,
            "optional": False,
        },
    }
    variables = {
        "analytics-service": "ANALYTICS_API_TOKEN_FILE",
        "inference-service": "INFERENCE_API_TOKEN_FILE",
        "consumer-service": "CONSUMER_INFERENCE_TOKEN_FILE",
    }
    for name, variable in variables.items():
        deployment = manifests.get("Deployment", name)
        assert env_of(manifests, deployment)[variable] == "/var/run/vidpipe/api-token/token", name
        assert volume in deployment["spec"]["template"]["spec"]["volumes"], name
        assert not [k for k in env_of(manifests, deployment) if k.endswith("_SECRET_ARN")], name
    job = seed_job(manifests)
    args = parser().parse_args(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert (args.token_file, args.token_secret_arn) == ("/var/run/vidpipe/api-token/token", None)
    assert volume in job["spec"]["template"]["spec"]["volumes"]
    ports = {p["port"] for rule in manifests.get("NetworkPolicy", SEED)["spec"]["egress"] for p in rule["ports"]}
    assert ports == {8082}


def test_service_for_port_forward_to_the_live_view_and_for_kedas_count(manifests):
    service = manifests.get("Service", "analytics")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8082, "protocol": "TCP", "targetPort": "http"},
        {"name": "ops", "port": 8092, "protocol": "TCP", "targetPort": "ops"},
    ]
    labels = manifests.get("Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_network_policy_opens_kafka_https_and_credentials_and_admits_the_seed_job_and_keda(manifests):
    policy = manifests.get("NetworkPolicy", NAME)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": NAME}}
    assert policy["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": SEED}}}],
            "ports": [{"port": 8082, "protocol": "TCP"}],
        },
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}],
            "ports": [{"port": 8092, "protocol": "TCP"}],
        },
    ]
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
    "stream,key,reason",
    [
        (
            {"lines": [{"name": "entrance", "start": [0.1, 1.2], "end": [0.9, 0.6]}]},
            "streams[lobby].lines[0].start",
            "y=1.2 is outside [0, 1]",
        ),
        (
            {"lines": [LOBBY_LINE], "zones": [{"name": "queue", "polygon": BOWTIE}]},
            "streams[lobby].zones[0].polygon",
            "intersects itself",
        ),
        (
            {"zones": [{"name": "queue", "polygon": [[0.1, 0.1], [-0.5, 0.2], [0.3, 0.9]]}]},
            "streams[lobby].zones[0].polygon",
            "outside [0, 1]",
        ),
        ({"target_fps": 0}, "streams[lobby].target_fps", "greater than 0"),
        ({"source": "rtsp://admin:pw@cam/1"}, "streams[lobby].source", "credentials"),
    ],
)
def test_a_bad_seed_is_refused_naming_the_key(settings, stream, key, reason):
    seed = [{"id": "lobby", "source": "secret:lobby", **stream}]
    with pytest.raises(WiringError) as caught:
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "streams": seed})
    message = str(caught.value)
    assert f"{key}:" in message and reason in message, message
    assert "pw@" not in message


def test_a_stream_defined_twice_and_the_old_analytics_section_are_refused(settings):
    twice = [{"id": "lobby", "source": "secret:a"}, {"id": "lobby", "source": "secret:b"}]
    with pytest.raises(WiringError, match=r"streams\[lobby\]\.id: 'lobby' is defined twice"):
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "streams": twice})
    with pytest.raises(WiringError, match=r"analytics: lines and zones are part of each stream's definition"):
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "analytics": {"lobby": {"lines": [LOBBY_LINE]}}})


def test_a_seeded_test_source_stream_wins_over_the_generated_one(settings):
    seed = [*settings["streams"], {"id": "test-source", "source": "secret:test", "lines": [LOBBY_LINE]}]
    wiring = PlatformWiring.from_outputs_file(
        SAMPLE_OUTPUTS, {**settings, "streams": seed}, rtsp_test_source={"enabled": True}
    )
    (test,) = [s for s in wiring.seed if s.id == "test-source"]
    assert test.source == "secret:test" and [line.name for line in test.lines] == ["entrance"]


def test_standalone_synth_stops_on_a_bad_seed_naming_the_key(tmp_path, settings):
    bad = {
        **settings,
        "streams": [{"id": "lobby", "source": "secret:lobby", "zones": [{"name": "q", "polygon": BOWTIE}]}],
    }
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(bad))
    env = {**os.environ, "CDK8S_OUTDIR": str(tmp_path / "out"), "VIDPIPE_K8S_SETTINGS": str(path)}
    env.pop("VIDPIPE_OUTPUTS_FILE", None)
    done = subprocess.run([sys.executable, "-m", "cdk8s_app.main"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "streams[lobby].zones[0].polygon: the polygon intersects itself" in done.stderr
    assert "Traceback" not in done.stderr and not list((tmp_path / "out").glob("*.yaml"))
