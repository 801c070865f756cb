"""KEDA for real: its operator and metrics API server (v2.18.0, the chart's) on the control plane, reading
consumer lag from the local Kafka broker, and the HPA it makes scaling the consumer Deployment up when a
backlog builds on a group that does not consume and back down to the minimum when the group catches up.

The ScaledObjects and the TriggerAuthentication are the synthesized ones with what only AWS has swapped out:
the broker is the local plaintext one (no SASL/IAM, TLS or region; the TriggerAuthentication asks for no
identity), the topic and group are this test's own, and the timings are shortened (polling, cooldown, the
HPA's scale-down window and policy periods) so that a scale-down takes seconds, not five minutes."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import pytest

from tools.k8s.client import ApiError, wait_for

pytestmark = [pytest.mark.infra, pytest.mark.broker]

SCALED = "consumer-service"
PARTITIONS = 6
LAGGING_PARTITIONS = 3
AWS_ONLY = ("sasl", "saslTokenProvider", "tls", "awsRegion")


def local_variant(scaled_object: dict[str, Any], bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    local = copy.deepcopy(scaled_object)
    spec = local["spec"]
    spec["pollingInterval"] = 2
    spec["cooldownPeriod"] = 5
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["stabilizationWindowSeconds"] = 5
    for direction, period in (("scaleDown", 5), ("scaleUp", 3)):
        for policy in behavior[direction]["policies"]:
            policy["periodSeconds"] = period
    for trigger in spec["triggers"]:
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        for key in AWS_ONLY:
            metadata.pop(key, None)
        metadata.update(bootstrapServers=bootstrap, topic=topic, consumerGroup=group)
    return local


@pytest.fixture(scope="module")
def backlog_topic(kafka_bootstrap):
    from confluent_kafka.admin import AdminClient, NewTopic

    run = uuid.uuid4().hex[:8]
    topic, group = f"t-{run}.frames", f"g-{run}.inference"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).values():
        future.result(30)
    yield topic, group
    admin.delete_topics([topic])


@pytest.fixture(scope="module")
def keda(control_plane, deployed_charts, kafka_bootstrap, backlog_topic):
    """The local variants applied before KEDA starts (it never sees an MSK address), then KEDA."""
    from tests.fixtures.control_plane import FIELD_MANAGER
    from tests.fixtures.pipeline import missing_setup
    from tools.k8s.control_plane import missing_binaries

    missing = missing_binaries(("keda-operator", "keda-adapter"))
    if missing:
        missing_setup(f"KEDA is not built ({', '.join(missing)}): run `make k8s-deps`")
    topic, group = backlog_topic
    manifests = deployed_charts.manifests
    auth = copy.deepcopy(manifests.kind("TriggerAuthentication")[0])
    auth["spec"] = {"podIdentity": {"provider": "none"}}
    scaled_objects = manifests.kind("ScaledObject")
    on_lag = [so for so in scaled_objects if all(t["type"] == "kafka" for t in so["spec"]["triggers"])]
    variants = [local_variant(so, kafka_bootstrap, topic, group) for so in on_lag]
    control_plane.apply([auth, *variants], FIELD_MANAGER)
    # The others read in-cluster endpoints (the publishers' count of streams): KEDA must not poll them here
    for so in scaled_objects:
        if so not in on_lag:
            control_plane.client.delete("ScaledObject", so["metadata"]["name"], so["metadata"]["namespace"])
    t0 = time.monotonic()
    control_plane.start_keda()
    control_plane.start_seconds["keda"] = time.monotonic() - t0
    yield {so["metadata"]["name"]: so for so in variants}
    control_plane.stop_keda()


def _condition(obj: dict, kind: str) -> str | None:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition["type"] == kind:
            return str(condition["status"])
    return None


def _replicas(client, namespace: str) -> int:
    return int(client.get("Deployment", SCALED, namespace)["spec"]["replicas"])


def _external_metric(client, namespace: str, scaled_object: dict) -> float:
    name = scaled_object["status"]["externalMetricNames"][0]
    values = client.request(
        "GET",
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{name}",
        params={"labelSelector": f"scaledobject.keda.sh/name={SCALED}"},
    )["items"]
    quantity = values[0]["value"]
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _publish(bootstrap: str, topic: str, per_partition: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition in range(LAGGING_PARTITIONS):
        for i in range(per_partition):
            producer.produce(topic, value=b"frame %d" % i, partition=partition)
    assert producer.flush(30) == 0


def _commit_to_end(bootstrap: str, topic: str, group: str) -> None:
    """The group catches up without consuming: its offsets committed at each partition's end."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1])
            for p in range(PARTITIONS)
        ]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def test_lag_scales_the_consumer_up_and_back_down(control_plane, deployed_charts, keda, kafka_bootstrap, backlog_topic):
    client = control_plane.client
    namespace = deployed_charts.namespace
    topic, group = backlog_topic
    spec = keda[SCALED]["spec"]
    low, high = spec["minReplicaCount"], spec["maxReplicaCount"]
    hpa_name = spec["advanced"]["horizontalPodAutoscalerConfig"]["name"]

    def scaled_object() -> dict:
        return client.get("ScaledObject", SCALED, namespace)

    def describe() -> str:
        so = scaled_object().get("status", {})
        try:
            hpa = client.get("HorizontalPodAutoscaler", hpa_name, namespace).get("status", {})
        except ApiError as err:
            hpa = {"error": err.message}
        return f"ScaledObject status {so}; HPA status {hpa}; logs:\n{control_plane.logs(15)}"

    wait_for("the ScaledObject Ready", lambda: _condition(scaled_object(), "Ready") == "True", 60, describe=describe)
    hpa = wait_for(
        f"KEDA's HPA {hpa_name}",
        lambda: client.items("HorizontalPodAutoscaler", namespace, fieldSelector=f"metadata.name={hpa_name}"),
        60,
        describe=describe,
    )[0]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (low, high)
    assert hpa["spec"]["scaleTargetRef"]["name"] == SCALED
    wait_for(f"{SCALED} at its minimum", lambda: _replicas(client, namespace) == low, 60, describe=describe)
    assert _external_metric(client, namespace, scaled_object()) == 0

    # A backlog on a group that does not consume: one and a half replicas' worth on each of three partitions
    trigger = spec["triggers"][0]["metadata"]
    threshold = int(trigger["lagThreshold"])
    per_partition = threshold + threshold // 2
    _publish(kafka_bootstrap, topic, per_partition)
    lag = LAGGING_PARTITIONS * per_partition
    assert trigger.get("limitToPartitionsWithLag") == "true"
    # ...which KEDA reports as at most one threshold's worth per partition with lag, so the HPA never asks
    # for more consumers than there are partitions to read
    reported = LAGGING_PARTITIONS * threshold if lag // threshold > LAGGING_PARTITIONS else lag
    wait_for(
        f"the lag ({lag}, reported {reported}) through the external metrics API",
        lambda: _external_metric(client, namespace, scaled_object()) == reported,
        60,
        describe=describe,
    )
    up = wait_for(
        f"{SCALED} scaled above {low}", lambda: (r := _replicas(client, namespace)) > low and r, 90, describe=describe
    )
    peak = up
    # limitToPartitionsWithLag: one replica per partition with lag, at most
    wanted = min(high, LAGGING_PARTITIONS)
    deadline = time.monotonic() + 60
    while peak < wanted and time.monotonic() < deadline:
        time.sleep(1)
        peak = max(peak, _replicas(client, namespace))
    assert peak == wanted, describe()
    # ...and stays there (two more HPA syncs): the partitions, not the backlog, bound it
    settle = time.monotonic() + 7
    while time.monotonic() < settle:
        peak = max(peak, _replicas(client, namespace))
        time.sleep(0.5)
    assert low < peak == wanted <= high, describe()
    wait_for("the ScaledObject active", lambda: _condition(scaled_object(), "Active") == "True", 30, describe=describe)
    status = scaled_object()["status"]
    health = next(iter(status.get("health", {}).values()), {})
    assert health.get("status") == "Happy" and health.get("numberOfFailures", 0) == 0, status  # not KEDA's fallback
    hpa_status = client.get("HorizontalPodAutoscaler", hpa_name, namespace)["status"]
    assert hpa_status["desiredReplicas"] == peak
    external = hpa_status["currentMetrics"][0]["external"]
    assert external["metric"]["name"] == status["externalMetricNames"][0]

    # The group catches up
    _commit_to_end(kafka_bootstrap, topic, group)
    wait_for(
        "the lag back to 0", lambda: _external_metric(client, namespace, scaled_object()) == 0, 60, describe=describe
    )
    wait_for(f"{SCALED} back at {low}", lambda: _replicas(client, namespace) == low, 90, describe=describe)
    wait_for(
        "the ScaledObject inactive", lambda: _condition(scaled_object(), "Active") == "False", 30, describe=describe
    )
    pods = client.items("Pod", namespace, labelSelector=f"app.kubernetes.io/name={SCALED}")
    assert len([p for p in pods if "deletionTimestamp" not in p["metadata"]]) == low
