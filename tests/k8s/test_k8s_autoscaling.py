"""KEDA ScaledObjects scale on the consumer group's lag with MSK IAM auth, within safe bounds."""

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
    assert {o["spec"]["scaleTargetRef"]["name"] for o in manifests.kind("ScaledObject")} == set(SCALED)
    assert manifests.get("Deployment", "analytics-service")["spec"]["replicas"] == 1


def test_consumer_never_scales_past_the_partitions(manifests, wiring):
    spec = manifests.get("ScaledObject", "consumer-service")["spec"]
    assert spec["maxReplicaCount"] <= wiring.topic_partitions
    meta = kafka_trigger({"spec": spec})["metadata"]
    assert meta["limitToPartitionsWithLag"] == "true" and "allowIdleConsumers" not in meta, "KEDA: mutually exclusive"


def test_lag_thresholds_derive_from_measured_throughput_and_latency_budget(manifests, wiring):
    from vidpipe_deploy import sizing

    s = wiring.scaling
    assert (s.pipeline_fps_per_replica, s.inference_fps_per_replica) == (
        sizing.THROUGHPUT.pipeline_fps,
        sizing.THROUGHPUT.inference_fps,
    ), "defaults come from sizing.py only"
    consumer = kafka_trigger(manifests.get("ScaledObject", "consumer-service"))["metadata"]
    inference = kafka_trigger(manifests.get("ScaledObject", "inference-service"))["metadata"]
    floor = sizing.CONSUMER_INFLIGHT_FRAMES + 1
    assert int(consumer["lagThreshold"]) == max(floor, math.floor(s.pipeline_fps_per_replica * s.latency_budget_s))
    assert int(inference["lagThreshold"]) == max(floor, math.floor(s.inference_fps_per_replica * s.latency_budget_s))
    env = manifests.config_map("inference-service")
    assert (env["INFERENCE_INSTANCES"], env["INFERENCE_INTRA_OP_THREADS"]) == (
        str(sizing.THROUGHPUT.instances),
        str(sizing.THROUGHPUT.threads_per_instance),
    ), "the pod runs the configuration its throughput was measured with"


def test_a_bench_run_becomes_settings_and_thresholds_never_drop_to_the_in_flight_depth(tmp_path, capsys):
    import yaml

    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, SETTINGS
    from vidpipe_deploy import sizing
    from vidpipe_deploy.wiring import PlatformWiring, load_settings

    bench = tmp_path / "latest.json"
    assert sizing.measured(bench) == sizing.DOCUMENTED, "no bench file: the documented figures"
    bench.write_text('{"machine": {"cpus": 2}, "service": {"fps": 80.0}, "end_to_end": {"fps": 60.0}}')
    two_cores = sizing.measured(bench)
    assert (two_cores.pipeline_fps, two_cores.inference_fps) == (60.0, 80.0)
    bench.write_text('{"machine": {"cpus": 8}, "service": {"fps": 80.0}, "end_to_end": {"fps": 60.0}}')
    eight_cores = sizing.measured(bench)
    assert (eight_cores.pipeline_fps, eight_cores.inference_fps) == (15.0, 20.0), "scaled to one 2-CPU replica"
    assert (two_cores.instances, two_cores.threads_per_instance) == (1, 2), "no best configuration: 1 x 2"
    bench.write_text(
        '{"fps_per_vcpu": {"cpus": 16}, "service": {"fps": 80.0}, "end_to_end": {"fps": 60.0},'
        ' "bare": {"best": {"instances": 16, "threads_per_instance": 1}}}'
    )
    sixteen = sizing.measured(bench)
    assert (sixteen.pipeline_fps, sixteen.inference_fps) == (7.5, 10.0), "per vCPU of the bench's CPU limit"
    assert (sixteen.instances, sixteen.threads_per_instance) == (2, 1), "the best configuration, fitted to the pod"
    bench.write_text("{not json")
    assert sizing.measured(bench) == sizing.DOCUMENTED
    assert sizing.lag_threshold(60.0, 2.0) == 120
    assert sizing.lag_threshold(10.0, 2.0) == sizing.CONSUMER_INFLIGHT_FRAMES + 1
    assert sizing.CONSUMER_INFLIGHT_FRAMES == 3 * 16, "the consumer's own defaults"
    assert sizing.main([str(bench)]) == 1, "an unusable bench file is refused, not read as figures"

    # python -m vidpipe_deploy.sizing prints the settings a deployment on the bench's hardware commits.
    bench.write_text('{"machine": {"cpus": 2}, "service": {"fps": 300.0}, "end_to_end": {"fps": 200.0}}')
    capsys.readouterr()
    assert sizing.main([str(bench)]) == 0
    chosen = yaml.safe_load(capsys.readouterr().out)
    settings = load_settings(SETTINGS)
    for section, values in chosen.items():
        settings[section] = {**settings.get(section, {}), **values}
    wiring = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings)
    assert wiring.scaling.consumer_lag_threshold == 400 and wiring.scaling.inference_lag_threshold == 600
    assert (wiring.resources.inference_instances, wiring.resources.inference_threads) == (1, 2)


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
