"""KEDA: the TriggerAuthentication, and the ScaledObjects the rooms ask for (services/<folder>/deploy.py): the
consumer and the inference service scale on the consumer group's lag on the frames topic, the publishers on the
number of enabled streams the analytics service counts (a `metrics-api` trigger).

Trigger type `kafka` (KEDA's Sarama-based scaler): it is the scaler that implements MSK IAM as
SASL OAUTHBEARER with `saslTokenProvider: aws_msk_iam`. The experimental `apache-kafka` scaler
refuses `sasl: oauthbearer` ("SASL/OAUTHBEARER is not implemented yet") and spells MSK IAM
`sasl: aws_msk_iam` instead. See docs/KEDA_KAFKA_LAG.md.

Typed constructs come from `cdk8s import` of the vendored CRD (cdk8s_app/crds/).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from constructs import Construct

from vidpipe_deploy.wiring import PlatformWiring

from .imports.sh import keda
from .pods import app_labels

TRIGGER_TYPE = "kafka"
TRIGGER_AUTH_NAME = "vidpipe-kafka-msk-iam"
# KEDA's generic HTTP scaler: GETs a URL and reads one number from its JSON answer.
METRICS_API_TRIGGER = "metrics-api"


def kafka_trigger_metadata(wiring: PlatformWiring, lag_threshold: int, cap_at_partitions: bool) -> dict[str, str]:
    """Trigger metadata (all strings, as the CRD requires).

    cap_at_partitions: for the consumer, replicas beyond the partitions with lag would sit idle
    (limitToPartitionsWithLag, which needs `topic` and excludes allowIdleConsumers). The inference
    service is not a group member: one consumer keeps several batches in flight, so it may use more
    replicas than there are partitions (allowIdleConsumers lifts the partition cap on the metric).
    """
    metadata = {
        "bootstrapServers": wiring.kafka_bootstrap,
        "consumerGroup": wiring.consumer_group,
        "topic": wiring.topics.frames,
        "lagThreshold": str(lag_threshold),
        # With minReplicaCount >= 1 activation only matters for 0 <-> 1, which is never used.
        "activationLagThreshold": "0",
        # The consumer starts a new group at the earliest offset (vidpipe.kafka.consumer_config).
        "offsetResetPolicy": "earliest",
    }
    if cap_at_partitions:
        metadata["limitToPartitionsWithLag"] = "true"
    else:
        metadata["allowIdleConsumers"] = "true"
    if wiring.kafka_auth == "msk-iam":
        metadata.update(
            {
                "sasl": "oauthbearer",
                "saslTokenProvider": "aws_msk_iam",
                "tls": "enable",
                "awsRegion": wiring.region,
            }
        )
    else:
        metadata["tls"] = "enable" if wiring.kafka_tls else "disable"
    return metadata


class HasScaling(Protocol):
    def add_scaling(self, scope: Construct, wiring: PlatformWiring) -> None: ...


class Autoscaling(Construct):
    def __init__(self, scope: Construct, id: str, wiring: PlatformWiring, rooms: Sequence[HasScaling] = ()) -> None:
        super().__init__(scope, id)
        self.wiring = wiring
        self.labels = app_labels("vidpipe", "autoscaling")
        self.auth = None
        if wiring.kafka_auth == "msk-iam":
            self.auth = keda.ScaledObjectSpecTriggersAuthenticationRef(
                name=TRIGGER_AUTH_NAME, kind="TriggerAuthentication"
            )
            keda.TriggerAuthentication(
                self,
                "trigger-auth",
                metadata={"name": TRIGGER_AUTH_NAME, "labels": self.labels},
                spec=keda.TriggerAuthenticationSpec(pod_identity=self._pod_identity()),
            )
        for room in rooms:
            room.add_scaling(self, wiring)

    def frames_lag(self, target: str, min_replicas: int, max_replicas: int, lag_threshold: int, cap: bool) -> None:
        """A ScaledObject for Deployment `target` on the consumer group's lag on the frames topic."""
        metadata = kafka_trigger_metadata(self.wiring, lag_threshold, cap_at_partitions=cap)
        trigger = keda.ScaledObjectSpecTriggers(
            type=TRIGGER_TYPE, name="frames-lag", metadata=metadata, authentication_ref=self.auth
        )
        self._scaled_object(target, min_replicas, max_replicas, trigger, self.labels)

    def metrics_api(
        self,
        target: str,
        min_replicas: int,
        max_replicas: int,
        *,
        name: str,
        url: str,
        value_location: str,
        target_value: int,
    ) -> keda.ScaledObject:
        """A ScaledObject for Deployment `target` on a number an HTTP endpoint answers (JSON, at `value_location`):
        AverageValue, so the HPA keeps ceil(value / target_value) replicas. When the endpoint fails, the count
        stays where it is (never below min_replicas): a number nobody can read says nothing about the load."""
        trigger = keda.ScaledObjectSpecTriggers(
            type=METRICS_API_TRIGGER,
            name=name,
            metric_type="AverageValue",
            metadata={
                "url": url,
                "format": "json",
                "valueLocation": value_location,
                "targetValue": str(target_value),
            },
        )
        fallback = keda.ScaledObjectSpecFallback(
            failure_threshold=3,
            replicas=min_replicas,
            behavior=keda.ScaledObjectSpecFallbackBehavior.CURRENT_REPLICAS_IF_HIGHER,  # KEDA 2.17+
        )
        return self._scaled_object(target, min_replicas, max_replicas, trigger, self.labels, fallback=fallback)

    def _pod_identity(self) -> keda.TriggerAuthenticationSpecPodIdentity:
        k = self.wiring.keda
        if k.role_arn:
            return keda.TriggerAuthenticationSpecPodIdentity(
                provider=keda.TriggerAuthenticationSpecPodIdentityProvider.AWS, role_arn=k.role_arn
            )
        return keda.TriggerAuthenticationSpecPodIdentity(
            provider=keda.TriggerAuthenticationSpecPodIdentityProvider.AWS,
            identity_owner=keda.TriggerAuthenticationSpecPodIdentityIdentityOwner[k.identity_owner.upper()],
        )

    def _scaled_object(
        self,
        target: str,
        min_replicas: int,
        max_replicas: int,
        trigger: keda.ScaledObjectSpecTriggers,
        labels: dict[str, str],
        fallback: keda.ScaledObjectSpecFallback | None = None,
    ) -> keda.ScaledObject:
        """fallback: what happens while the trigger fails (default: half the maximum replicas, at least the
        minimum)."""
        s = self.wiring.scaling
        return keda.ScaledObject(
            self,
            f"{target}-scaledobject",
            metadata={"name": target, "labels": labels},
            spec=keda.ScaledObjectSpec(
                scale_target_ref=keda.ScaledObjectSpecScaleTargetRef(
                    api_version="apps/v1", kind="Deployment", name=target
                ),
                min_replica_count=min_replicas,
                max_replica_count=max_replicas,
                polling_interval=s.polling_interval_s,
                # Only used for scale-to-zero, which minReplicaCount >= 1 rules out.
                cooldown_period=300,
                fallback=fallback
                or keda.ScaledObjectSpecFallback(failure_threshold=3, replicas=max(min_replicas, max_replicas // 2)),
                advanced=keda.ScaledObjectSpecAdvanced(
                    restore_to_original_replica_count=False,
                    horizontal_pod_autoscaler_config=keda.ScaledObjectSpecAdvancedHorizontalPodAutoscalerConfig(
                        name=f"keda-hpa-{target}",
                        behavior=keda.ScaledObjectSpecAdvancedHorizontalPodAutoscalerConfigBehavior(
                            # Up fast (lag is already latency), down slowly (a rebalance costs seconds of pause).
                            scale_up=keda.ScaledObjectSpecAdvancedHorizontalPodAutoscalerConfigBehaviorScaleUp(
                                stabilization_window_seconds=0,
                                select_policy="Max",
                                policies=[
                                    keda.ScaledObjectSpecAdvancedHorizontalPodAutoscalerConfigBehaviorScaleUpPolicies(
                                        type="Pods", value=2, period_seconds=30
                                    ),
                                    keda.ScaledObjectSpecAdvancedHorizontalPodAutoscalerConfigBehaviorScaleUpPolicies(
                                        type="Percent", value=100, period_seconds=30
                                    ),
                                ],
                            ),
                            scale_down=keda.ScaledObjectSpecAdvancedHorizontalPodAutoscalerConfigBehaviorScaleDown(
                                stabilization_window_seconds=s.scale_down_stabilization_s,
                                select_policy="Min",
                                policies=[
                                    keda.ScaledObjectSpecAdvancedHorizontalPodAutoscalerConfigBehaviorScaleDownPolicies(
                                        type="Pods", value=1, period_seconds=60
                                    ),
                                ],
                            ),
                        ),
                    ),
                ),
                triggers=[trigger],
            ),
        )
