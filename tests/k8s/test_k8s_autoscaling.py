"""KEDA ScaledObjects: the consumer and inference on the consumer group's lag with MSK IAM auth, the publishers on
the number of enabled streams the analytics service counts, all within safe bounds."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.infra

SCALED = ("consumer-service", "inference-service")


def kafka_trigger(scaled_object: dict) -> dict:
    (trigger,) = scaled_object["spec"]["triggers"]
    # KEDA's Sarama-based `kafka` scaler implements MSK IAM as OAUTHBEARER + saslTokenProvider;
    # `apache-kafka` rejects sasl=oauthbearer.
    assert trigger["type"] == "kafka"
    return trigger


@pytest.mark.parametrize("name", SCALED)
def test_trigger_watches_the_consumer_group_on_the_frames_topic_with_msk_iam(manifests, wiring, name):
    trigger = kafka_trigger(manifests.get("ScaledObject", name))
    meta = trigger["metadata"]
    assert (
        meta["consumerGroup"] == wiring.consumer_group == manifests.config_map("consumer-service")["CONSUMER_GROUP_ID"]
    )
    assert meta["topic"] == wiring.topics.frames
    assert meta["bootstrapServers"] == wiring.kafka_bootstrap
    assert {k: meta[k] for k in ("sasl", "saslTokenProvider", "tls", "awsRegion")} == {
        "sasl": "oauthbearer",
        "saslTokenProvider": "aws_msk_iam",
        "tls": "enable",
        "awsRegion": wiring.region,
    }
    assert all(isinstance(v, str) for v in meta.values())
    auth = manifests.get("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "keda"}


@pytest.mark.parametrize("name", SCALED)
def test_scaled_deployments_leave_replicas_to_keda(manifests, name):
    scaled = manifests.get("ScaledObject", name)
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert "replicas" not in manifests.get("Deployment", name)["spec"], "a fixed count fights the HPA"
    assert scaled["spec"]["minReplicaCount"] >= 1, "a group that never committed can stay at zero"
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_analytics_is_not_autoscaled(manifests):
    # Its group's partitions bound it and a rebalance resets trackers: a fixed count (a setting) instead.
    assert {o["spec"]["scaleTargetRef"]["name"] for o in manifests.kind("ScaledObject")} == {*SCALED, PUBLISHER}
    assert manifests.get("Deployment", "analytics-service")["spec"]["replicas"] == 1


PUBLISHER = "frame-publisher"


def test_publishers_scale_on_the_enabled_streams_the_analytics_service_counts(manifests, wiring):
    """One pod per publisher_streams_per_pod enabled streams (AverageValue: ceil(enabled / target)), read from the
    analytics service's ops port; at least two pods, at most one per registry partition."""
    scaled = manifests.get("ScaledObject", PUBLISHER)
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": PUBLISHER}
    assert "replicas" not in manifests.get("Deployment", PUBLISHER)["spec"], "a fixed count fights the HPA"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api" and trigger["metricType"] == "AverageValue"
    assert "authenticationRef" not in trigger, "the ops port needs no credentials"
    analytics = wiring.services.analytics
    assert trigger["metadata"] == {
        "url": f"http://analytics.{wiring.namespace}.svc:{analytics.health_port}/streams/count",
        "format": "json",
        "valueLocation": "enabled",
        "targetValue": "25",
    }
    assert analytics.health_port == 8092 and wiring.scaling.publisher_streams_per_pod == 25
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 24) == (2, wiring.topics.streams_partitions)
    # An unreadable count says nothing about the load: keep the pods there are (never fewer than the minimum).
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 2, "behavior": "currentReplicasIfHigher"}


def test_the_ops_port_the_rule_reads_is_on_the_analytics_service_and_open_to_keda_only(manifests, wiring):
    service = manifests.get("Service", "analytics")
    assert {"name": "ops", "port": 8092, "protocol": "TCP", "targetPort": "ops"} in service["spec"]["ports"]
    policy = manifests.get("NetworkPolicy", "analytics-service")["spec"]
    keda = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": wiring.keda_namespace}}}
    assert wiring.keda_namespace == "keda"
    assert {"from": [keda], "ports": [{"port": 8092, "protocol": "TCP"}]} in policy["ingress"]
    assert all(
        keda not in rule["from"] or rule["ports"] == [{"port": 8092, "protocol": "TCP"}] for rule in policy["ingress"]
    )


def test_publisher_bounds_and_target_are_settings(settings):
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, synthesize
    from vidpipe_deploy.wiring import PlatformWiring, WiringError

    scaling = {**settings["scaling"], "publisher_streams_per_pod": 10, "publisher_min_replicas": 3}
    wiring = PlatformWiring.from_outputs_file(
        SAMPLE_OUTPUTS, {**settings, "scaling": {**scaling, "publisher_max_replicas": 12}}
    )
    spec = synthesize(wiring).get("ScaledObject", PUBLISHER)["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["triggers"][0]["metadata"]["targetValue"]) == (
        3,
        12,
        "10",
    )
    with pytest.raises(WiringError, match=r"publisher_max_replicas \(25\) exceeds the registry's partitions \(24\)"):
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "scaling": {"publisher_max_replicas": 25}})
    more = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "topics": {"streams_partitions": 48}})
    assert synthesize(more).get("ScaledObject", PUBLISHER)["spec"]["maxReplicaCount"] == 48


def test_consumer_never_scales_past_the_partitions(manifests, wiring):
    spec = manifests.get("ScaledObject", "consumer-service")["spec"]
    assert spec["maxReplicaCount"] <= wiring.topic_partitions
    meta = kafka_trigger({"spec": spec})["metadata"]
    assert meta["limitToPartitionsWithLag"] == "true" and "allowIdleConsumers" not in meta, "KEDA: mutually exclusive"


def _thresholds(manifests) -> tuple[int, int]:
    consumer = kafka_trigger(manifests.get("ScaledObject", "consumer-service"))["metadata"]
    inference = kafka_trigger(manifests.get("ScaledObject", "inference-service"))["metadata"]
    return int(consumer["lagThreshold"]), int(inference["lagThreshold"])


def test_lag_thresholds_and_the_inference_pod_come_from_the_figures_for_the_node_type(manifests, wiring):
    from tests.k8s.k8s_helpers import containers
    from vidpipe_deploy import sizing

    assert wiring.inference_node_type == sizing.DEFAULT_NODE_TYPE == "c7i.xlarge", "settings.yaml: the default"
    pod = sizing.for_node(wiring.inference_node_type)
    s = wiring.scaling
    assert (s.pipeline_fps_per_replica, s.inference_fps_per_replica) == (pod.pipeline_fps, pod.inference_fps)
    floor = sizing.CONSUMER_INFLIGHT_FRAMES + 1
    assert _thresholds(manifests) == (
        max(floor, math.floor(pod.pipeline_fps * s.latency_budget_s)),
        max(floor, math.floor(pod.inference_fps * s.latency_budget_s)),
    )
    deployment = manifests.get("Deployment", "inference-service")
    (container,) = containers(deployment)
    assert container["resources"] == {
        "requests": {"cpu": pod.resources["cpu_request"], "memory": pod.resources["memory_request"]},
        "limits": {"cpu": pod.resources["cpu_limit"], "memory": pod.resources["memory_limit"]},
    }
    # One pod per 4-vCPU node: what is left beside the kubelet's share and the daemonsets, bursting to all 4.
    assert (pod.cpu_request_m, pod.cpu_limit, pod.memory_mi) == (3000, 4, 100 + 450 * 4)
    env = manifests.config_map("inference-service")
    assert (env["INFERENCE_INSTANCES"], env["INFERENCE_INTRA_OP_THREADS"]) == ("1", "1"), "per serving process"
    assert "INFERENCE_PROCESSES" not in env, "the service's own default: one process per CPU of the limit"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["vidpipe.io/sized-for"] == pod.note and "(estimate" in pod.note, "an estimate says so"


def test_another_node_type_sizes_another_pod_and_explicit_settings_win(settings):
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS
    from vidpipe_deploy import sizing
    from vidpipe_deploy.wiring import PlatformWiring, WiringError

    bigger = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "inference_node_type": "c7i.2xlarge"})
    pod = sizing.for_node("c7i.2xlarge")
    assert bigger.resources.inference.model_dump() == pod.resources
    assert bigger.scaling.inference_fps_per_replica == pod.inference_fps
    assert pod.inference_fps > sizing.for_node("c7i.xlarge").inference_fps > sizing.for_node("c6i.xlarge").inference_fps
    pinned = {**settings, "inference_node_type": "c6i.xlarge"}
    pinned["scaling"] = {**settings["scaling"], "inference_fps_per_replica": 40.0}
    wiring = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, pinned)
    assert wiring.scaling.inference_fps_per_replica == 40.0, "a deployment's own figure wins"
    assert wiring.scaling.pipeline_fps_per_replica == sizing.for_node("c6i.xlarge").pipeline_fps
    with pytest.raises(WiringError, match="inference_node_type: no committed figures for instance type 'm5.large'"):
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {**settings, "inference_node_type": "m5.large"})


def test_the_planner_and_the_charts_size_from_the_same_committed_file(settings, tmp_path, monkeypatch):
    """Doubling a class's service figure in a copy of figures.json doubles the charts' inference throughput and
    threshold and halves the planner's inference nodes: neither keeps a figure of its own."""
    import json

    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, synthesize
    from vidpipe_deploy import figures, plan
    from vidpipe_deploy.wiring import PlatformWiring

    node = "c7i.xlarge"

    def sized() -> tuple[float, int, int]:
        wiring = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings)
        fleet = plan.plan(400, 5.0, node, allow_estimates=True)
        return wiring.scaling.inference_fps_per_replica, _thresholds(synthesize(wiring))[1], fleet.inference.nodes

    before = sized()
    document = json.loads(figures.FIGURES_FILE.read_text())
    klass = document["instance_families"]["c7i"]["cpu_class"]
    document["cpu_classes"][klass]["fps_per_vcpu"]["service"] *= 2
    copy = tmp_path / "figures.json"
    copy.write_text(json.dumps(document))
    with monkeypatch.context() as patch:
        patch.setattr(figures, "FIGURES_FILE", copy)
        figures.clear_cache()
        after = sized()
    figures.clear_cache()
    assert after[0] == pytest.approx(2 * before[0], abs=0.01)
    assert abs(after[1] - 2 * before[1]) <= 1
    assert after[2] == math.ceil(before[2] / 2) or after[2] == before[2] // 2
    assert sized() == before, "the committed file again once the copy is gone"


def test_a_bench_run_becomes_settings_and_thresholds_never_drop_to_the_in_flight_depth(tmp_path, capsys):
    import yaml

    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, SETTINGS
    from vidpipe_deploy import sizing
    from vidpipe_deploy.wiring import PlatformWiring, load_settings

    bench = tmp_path / "latest.json"
    assert sizing.measured(bench) is None, "no bench file: no figures"
    pod = sizing.for_node("c7i.xlarge")  # 3 CPUs requested: per-vCPU figures x 3
    bench.write_text('{"fps_per_vcpu": {"cpus": 2, "service": 40.0, "end_to_end": 30.0}}')
    run = sizing.measured(bench, pod)
    assert (run.inference_fps, run.pipeline_fps) == (120.0, 90.0)
    bench.write_text('{"machine": {"cpus": 8}, "service": {"fps": 80.0}, "end_to_end": {"fps": 60.0}}')
    older = sizing.measured(bench, pod)
    assert (older.inference_fps, older.pipeline_fps) == (30.0, 22.5), "per vCPU of the run's CPUs"
    bench.write_text('{"fps_per_vcpu": {"cpus": 16, "service": 500.0, "end_to_end": 400.0}}')
    assert sizing.measured(bench, pod).pipeline_fps == sizing.consumer_fps(sizing.committed.load()), (
        "never more than one consumer replica moves"
    )
    bench.write_text("{not json")
    assert sizing.measured(bench) is None
    assert sizing.lag_threshold(60.0, 2.0) == 120
    assert sizing.lag_threshold(10.0, 2.0) == sizing.CONSUMER_INFLIGHT_FRAMES + 1
    assert sizing.CONSUMER_INFLIGHT_FRAMES == 3 * 16, "the consumer's own defaults"
    assert sizing.main([str(bench)]) == 1, "an unusable bench file is refused, not read as figures"
    assert sizing.main(["--node", "m5.large"]) == 1, "a node type without figures is refused"

    # python -m vidpipe_deploy.sizing prints the settings a deployment on the bench's hardware commits.
    bench.write_text('{"fps_per_vcpu": {"cpus": 2, "service": 100.0, "end_to_end": 60.0}}')
    capsys.readouterr()
    assert sizing.main([str(bench), "--node", "c7i.xlarge"]) == 0
    chosen = yaml.safe_load(capsys.readouterr().out)
    assert chosen["inference_node_type"] == "c7i.xlarge"
    settings = load_settings(SETTINGS)
    for section, values in chosen.items():
        settings[section] = {**settings.get(section, {}), **values} if isinstance(values, dict) else values
    wiring = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings)
    assert wiring.scaling.consumer_lag_threshold == 360 and wiring.scaling.inference_lag_threshold == 600
    assert (wiring.resources.inference_instances, wiring.resources.inference_threads) == (1, 1)

    # Without a bench file: the committed figures for a node type, as the synth uses them.
    capsys.readouterr()
    assert sizing.main(["--node", "c7i.2xlarge"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["scaling"]["inference_fps_per_replica"] == sizing.for_node("c7i.2xlarge").inference_fps


def test_consumer_max_replicas_above_partitions_is_refused(wiring):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exceeds topic_partitions"):
        wiring.model_validate(
            {**wiring.model_dump(), "scaling": {"consumer_max_replicas": wiring.topic_partitions + 1}}
        )


def test_role_arn_replaces_identity_owner(wiring):
    from tests.k8s.k8s_helpers import synthesize

    role = "arn:aws:iam::123456789012:role/example-keda-scaler"
    manifests = synthesize(
        wiring.model_copy(update={"keda": type(wiring.keda)(role_arn=role), "create_namespace": False})
    )
    assert manifests.get("TriggerAuthentication", "vidpipe-kafka-msk-iam")["spec"]["podIdentity"] == {
        "provider": "aws",
        "roleArn": role,
    }
    assert "vidpipe-namespace" not in manifests.charts


def test_plain_kafka_has_no_sasl_and_no_trigger_authentication(wiring):
    from tests.k8s.k8s_helpers import synthesize

    plain = wiring.model_validate(
        {
            **wiring.model_dump(),
            "kafka_auth": "none",
            "kafka_tls": False,
            "kafka_bootstrap": "kafka.example.internal:9092",
        }
    )
    manifests = synthesize(plain)
    assert not manifests.kind("TriggerAuthentication")
    meta = kafka_trigger(manifests.get("ScaledObject", "consumer-service"))["metadata"]
    assert "sasl" not in meta and meta["tls"] == "disable"
    assert "authenticationRef" not in manifests.get("ScaledObject", "consumer-service")["spec"]["triggers"][0]
