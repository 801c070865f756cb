"""What a deployed service is and what it needs, as data: the base of every service's deploy unit.

Each service declares its unit in its own folder, beside its runtime (services/<folder>/deploy.py; the
registry, vidpipe_deploy/registry.py, lists the folders). A `ServiceUnit` names the service (its folder
under services/: image, Deployment, ServiceAccount and NetworkPolicy), its port, its node pool, and its
cloud grants as data (`KafkaGrant`, `ObjectGrant`). The CDK app turns the grants into the IAM policy of the
service's Pod Identity role and into the cdk-nag acknowledgements of exactly those wildcard resources
(cdk_app/units.py); the charts render its workload, network policy and scaling through the hooks its
room implements (cdk8s_app/rooms.py). `KedaUnit` does the same for the KEDA operator.

Never imports aws_cdk or cdk8s: the CDK app and the charts both load this.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from .facts import (
    FrozenModel,
    OutputKeys,
    output_key,
)

TopicRole = Literal["frames", "results", "dead_letter", "events", "streams", "streams_status"]
GroupRole = Literal["consumer_group", "analytics_group", "publisher_group", "reader_group"]


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

ALL_TOPICS: tuple[TopicRole, ...] = ("frames", "results", "dead_letter", "events", "streams", "streams_status")


def reads(sid: str, *topics: TopicRole) -> KafkaGrant:
    return KafkaGrant(
        sid=sid, actions=("kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"), on="topics", topics=topics
    )


def writes(sid: str, *topics: TopicRole) -> KafkaGrant:
    return KafkaGrant(
        sid=sid, actions=("kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"), on="topics", topics=topics
    )


def joins(group: GroupRole) -> KafkaGrant:
    """Membership of a consumer group (by its role in `Topics`): commit and describe."""
    return KafkaGrant(
        sid="UseGroup", actions=("kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"), on="group", group=group
    )


def names_group(group: GroupRole) -> KafkaGrant:
    """Describe only: a client that reads topics whole names a group it never joins (its coordinator lookup)."""
    return KafkaGrant(sid="NameReaderGroup", actions=("kafka-cluster:DescribeGroup",), on="group", group=group)


CONNECT = KafkaGrant(
    sid="Connect", actions=("kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"), on="cluster"
)
# Publisher and consumer create missing topics at start-up (TOPICS_CREATE=true): never broker auto-create.
# vidpipe.topics creates every contract topic, events and the stream registry and status topics included, and
# stops on a refused one, so the grant names all six. The analytics service never creates topics
# (TOPICS_CREATE=false in its pod).
CREATE_TOPICS = KafkaGrant(
    sid="CreateOwnTopics", actions=("kafka-cluster:CreateTopic",), on="topics", topics=ALL_TOPICS
)
KAFKA_WHY = "MSK cluster UUID unknown at synth: pinned to this cluster name and exact topic/group names"


class JobUnit(FrozenModel):
    """A run-once Kubernetes Job a service's room renders (the analytics service's registry seed), with its own
    ServiceAccount: the CDK app gives it a Pod Identity with exactly these grants, plus reading the API token's
    secret when it sends the token."""

    name: str  # its ServiceAccount, and the prefix of its Job's name
    component: str  # app.kubernetes.io/component
    grants: tuple[Grant, ...] = ()
    sends_api_token: bool = False
    nag_reason: str = ""  # why its wildcard resources are acceptable, if its grants have any


class ServiceUnit(FrozenModel):
    """A service's deploy unit. Its room (services/<folder>/deploy.py) subclasses it, through the charts'
    `cdk8s_app.rooms.Room`, to render its workload; the registry gives it its folder's name."""

    # How the other units and the wiring's images and service accounts refer to it (default: its name).
    role: str = ""
    # services/<name>, its image, Deployment, ServiceAccount, NetworkPolicy, ScaledObject (the registry sets it
    # from the folder, so renaming the folder renames the service)
    name: str = ""
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
    # The ClusterIP Service in front of its API, when other pods call it (the consumer calls `inference`).
    service_name: str | None = None
    # The size its image is held to (MB, on the local base; tests/images checks it).
    image_budget_mb: int = 400
    # Run-once Jobs its room renders in the charts' jobs chart (each with an identity of its own).
    jobs: tuple[JobUnit, ...] = ()

    @property
    def api_service(self) -> str:
        """The Service name its API is reached by: its service_name, else its own name."""
        return self.service_name or self.name

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
        return output_key(self.role, "")


def identity_outputs(name: str) -> tuple[str, str]:
    """The CfnOutput ids of a Pod Identity: its ServiceAccount name and its role ARN."""
    return output_key(name, OutputKeys.SERVICE_ACCOUNT), output_key(name, OutputKeys.ROLE_ARN)


class Services(FrozenModel):
    """The deployed services, in deployment order; each is found by its role."""

    units: tuple[ServiceUnit, ...]

    def all(self) -> tuple[ServiceUnit, ...]:
        return self.units

    def role(self, role: str) -> ServiceUnit:
        for unit in self.units:
            if unit.role == role:
                return unit
        raise KeyError(f"no deployed service has the role {role!r} (roles: {[u.role for u in self.units]})")

    def replace(self, *units: ServiceUnit) -> Services:
        """The same services with these in place of the ones of the same role."""
        by_role = {unit.role: unit for unit in units}
        return Services(units=tuple(by_role.get(unit.role, unit) for unit in self.units))

    def add(self, unit: ServiceUnit) -> Services:
        return Services(units=(*self.units, unit))

    # The four the platform is made of, by role: what one unit says of another (the consumer calls inference).
    @property
    def publisher(self) -> ServiceUnit:
        return self.role("publisher")

    @property
    def consumer(self) -> ServiceUnit:
        return self.role("consumer")

    @property
    def inference(self) -> ServiceUnit:
        return self.role("inference")

    @property
    def analytics(self) -> ServiceUnit:
        return self.role("analytics")

    @model_validator(mode="after")
    def _distinct(self) -> Services:
        for attribute in ("role", "name"):
            values = [getattr(unit, attribute) for unit in self.units]
            if len(values) != len(set(values)):
                raise ValueError(f"two deployed services share a {attribute}: {values}")
        return self


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
    nag_reason: str = f"{KAFKA_WHY} (describe only)"

    NAMESPACE_OUTPUT: ClassVar[str] = "KedaNamespace"


KEDA = KedaUnit()
