"""One unit per deployed service: what it is and what it needs, declared once.

A `ServiceUnit` names the service (its folder under services/, image, Deployment, ServiceAccount and
NetworkPolicy), its port, its node pool, and its cloud grants as data (`KafkaGrant`, `ObjectGrant`).
The CDK app turns the grants into the IAM policy of the service's Pod Identity role and into the
cdk-nag acknowledgements of exactly those wildcard resources (cdk_app/units.py); the charts read the
name, port and pool (cdk8s_app/workloads.py, network.py, autoscaling.py). `KedaUnit` does the same for
the KEDA operator (cdk_app/constructs/keda.py installs it).

Renaming a service or changing its port is one edit here (or a different `Services` passed to both
`cdk_app.app.build_platform` and `cdk8s_app.charts.build_platform_charts`; tests/infra/test_units.py).

Never imports aws_cdk: the charts load this in a plain cdk8s process.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from .facts import (
    ARCHIVE_PREFIX,
    FRAMES_PREFIX,
    GENERAL_POOL,
    INFERENCE_POOL,
    MODELS_PREFIX,
    FrozenModel,
    OutputKeys,
    output_key,
)

TopicRole = Literal["frames", "results", "dead_letter", "events"]
GroupRole = Literal["consumer_group", "analytics_group"]


class KafkaGrant(FrozenModel):
    """kafka-cluster actions on the cluster, on topics (by role in `Topics`) or on a consumer group
    (`group`, by its name in `Topics`)."""

    sid: str
    actions: tuple[str, ...]
    on: Literal["cluster", "topics", "group"]
    topics: tuple[TopicRole, ...] = ()
    group: GroupRole = "consumer_group"


class ObjectGrant(FrozenModel):
    """s3 actions on the archive bucket's objects under one prefix."""

    sid: str
    actions: tuple[str, ...]
    prefix: str


Grant = KafkaGrant | ObjectGrant

ALL_TOPICS: tuple[TopicRole, ...] = ("frames", "results", "dead_letter", "events")
_CONNECT = KafkaGrant(
    sid="Connect", actions=("kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"), on="cluster"
)
# Publisher and consumer create missing topics at start-up (TOPICS_CREATE=true): never broker auto-create.
# vidpipe.topics creates every contract topic, events included, and stops on a refused one, so the grant
# names all four. The analytics service never creates topics (TOPICS_CREATE=false in its pod).
_CREATE_TOPICS = KafkaGrant(
    sid="CreateOwnTopics", actions=("kafka-cluster:CreateTopic",), on="topics", topics=ALL_TOPICS
)
_KAFKA_WHY = "MSK cluster UUID unknown at synth: pinned to this cluster name and exact topic/group names"


class ServiceUnit(FrozenModel):
    role: Literal["publisher", "consumer", "inference", "analytics"]  # key of images/service_accounts in the wiring
    name: str  # services/<name>, its image, Deployment, ServiceAccount, NetworkPolicy, ScaledObject
    component: str  # app.kubernetes.io/component
    port: int  # the HTTP port it serves: the API (inference, analytics' live view) or, alone, its health server
    # The separate ops port serving /healthz, /readyz and /metrics where the API has its own port (inference,
    # analytics: <SERVICE>_OPS_PORT); probes and Prometheus go there, never to the API port.
    ops_port: int | None = None
    pool: str  # node pool (facts.NODE_POOL_LABEL)
    # The stem of its API token setting (the charts set <stem>_SECRET_ARN), when it checks or sends the token;
    # the CDK app lets exactly these units read the token's secret.
    api_token_variable: str | None = None
    grants: tuple[Grant, ...]
    nag_reason: str  # why its wildcard resources are acceptable (cdk-nag AwsSolutions-IAM5)

    @property
    def health_port(self) -> int:
        """Where /healthz, /readyz and /metrics are served: the ops port, else the only port."""
        return self.ops_port or self.port

    @property
    def image_output(self) -> str:
        return output_key(self.role, OutputKeys.IMAGE_URI)

    @property
    def image_id(self) -> str:
        """Construct id of its image asset."""
        return self.role.capitalize()

    def stream_identity(self, stream: str) -> str:
        """The ServiceAccount of a publisher that reads its source URL from Secrets Manager."""
        return f"{self.name}-{stream}"


def identity_outputs(name: str) -> tuple[str, str]:
    """The CfnOutput ids of a Pod Identity: its ServiceAccount name and its role ARN."""
    return output_key(name, OutputKeys.SERVICE_ACCOUNT), output_key(name, OutputKeys.ROLE_ARN)


PUBLISHER = ServiceUnit(
    role="publisher",
    name="frame-publisher",
    component="publisher",
    port=8082,
    pool=GENERAL_POOL,
    grants=(
        _CONNECT,
        _CREATE_TOPICS,
        KafkaGrant(
            sid="WriteFrames",
            actions=("kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"),
            on="topics",
            topics=("frames",),
        ),
    ),
    nag_reason=_KAFKA_WHY,
)
CONSUMER = ServiceUnit(
    role="consumer",
    name="consumer-service",
    component="consumer",
    port=8081,
    pool=GENERAL_POOL,
    api_token_variable="CONSUMER_INFERENCE_TOKEN",  # sends it to inference
    grants=(
        _CONNECT,
        _CREATE_TOPICS,
        KafkaGrant(
            sid="ReadFrames",
            actions=("kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"),
            on="topics",
            topics=("frames",),
        ),
        KafkaGrant(
            sid="WriteResultsAndDeadLetters",
            actions=("kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"),
            on="topics",
            topics=("results", "dead_letter"),
        ),
        KafkaGrant(sid="UseGroup", actions=("kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"), on="group"),
        ObjectGrant(sid="PutArchive", actions=("s3:PutObject",), prefix=ARCHIVE_PREFIX),
    ),
    nag_reason=f"{_KAFKA_WHY}; s3:PutObject only under {ARCHIVE_PREFIX}",
)
INFERENCE = ServiceUnit(
    role="inference",
    name="inference-service",
    component="inference",
    port=8080,
    ops_port=8090,
    pool=INFERENCE_POOL,
    api_token_variable="INFERENCE_API_TOKEN",
    grants=(ObjectGrant(sid="ReadModels", actions=("s3:GetObject",), prefix=MODELS_PREFIX),),
    nag_reason=f"s3:GetObject only under {MODELS_PREFIX}",
)
# Reads results as its own group, publishes events, shows archived frames in its live view. Same port
# as the publishers' health server: they never share a pod.
ANALYTICS = ServiceUnit(
    role="analytics",
    name="analytics-service",
    component="analytics",
    port=8082,
    ops_port=8092,
    pool=GENERAL_POOL,
    api_token_variable="ANALYTICS_API_TOKEN",
    grants=(
        _CONNECT,
        KafkaGrant(
            sid="ReadResults",
            actions=("kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"),
            on="topics",
            topics=("results",),
        ),
        KafkaGrant(
            sid="WriteEvents",
            actions=("kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"),
            on="topics",
            topics=("events",),
        ),
        KafkaGrant(
            sid="UseGroup",
            actions=("kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"),
            on="group",
            group="analytics_group",
        ),
        ObjectGrant(sid="ReadArchivedFrames", actions=("s3:GetObject",), prefix=FRAMES_PREFIX),
    ),
    nag_reason=f"{_KAFKA_WHY}; s3:GetObject only under {FRAMES_PREFIX}",
)


class Services(FrozenModel):
    """The deployed services, in deployment order."""

    publisher: ServiceUnit = PUBLISHER
    consumer: ServiceUnit = CONSUMER
    inference: ServiceUnit = INFERENCE
    analytics: ServiceUnit = ANALYTICS

    def all(self) -> tuple[ServiceUnit, ...]:
        return (self.publisher, self.consumer, self.inference, self.analytics)


SERVICES = Services()


class KedaUnit(FrozenModel):
    """The KEDA operator: its Helm chart, namespace, ServiceAccount, identity and trigger defaults.

    The Kafka scaler reads the group's committed offsets and the topic's end offsets: describe only.
    Its TriggerAuthentication uses the operator's own Pod Identity (`identity_owner`), which the CDK
    app associates with `service_account`.
    """

    namespace: str = "keda"
    service_account: str = "keda-operator"
    chart: str = "keda"
    release: str = "keda"
    repository: str = "https://kedacore.github.io/charts"
    pod_security: str = "baseline"  # the chart's pods meet baseline, not restricted
    identity_owner: Literal["keda", "workload"] = "keda"
    grants: tuple[Grant, ...] = (
        KafkaGrant(sid="Connect", actions=("kafka-cluster:Connect", "kafka-cluster:DescribeCluster"), on="cluster"),
        KafkaGrant(sid="DescribeFrames", actions=("kafka-cluster:DescribeTopic",), on="topics", topics=("frames",)),
        KafkaGrant(sid="DescribeGroup", actions=("kafka-cluster:DescribeGroup",), on="group"),
    )
    nag_reason: str = f"{_KAFKA_WHY} (describe only)"

    NAMESPACE_OUTPUT: ClassVar[str] = "KedaNamespace"


KEDA = KedaUnit()
