"""Deploy facts, defined once, imported by the CDK app (cdk_app/) and the charts (cdk8s_app/) alike.

Constants (node-pool label, MSK IAM port, archive prefixes, output keys, Kafka resource names), the
validators both sides apply to configuration (CIDR, ARNs, region, names), the configuration model both
sides read (`Topics`) and the registry seed's parser (`parse_seed`: the streams a deployment starts with, in
the stream registry's own format). Contract values (topic names, partitions, sizes, storage layout, stream
definitions) come from the services' own package, vidpipe.

This module never imports aws_cdk or cdk8s: it loads in a plain cdk8s process and in pydantic tests.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from vidpipe import storage
from vidpipe.contract import (
    ANALYTICS_GROUP,
    CONSUMER_GROUP,
    DEAD_LETTER_TOPIC,
    DEFAULT_PARTITIONS,
    EVENTS_TOPIC,
    FRAMES_TOPIC,
    READER_GROUP,
    RESULTS_TOPIC,
)
from vidpipe.stream_registry import (
    REGISTRY_PARTITIONS,
    SECRET_PREFIX,
    STREAMS_TOPIC,
    RegistryError,
    StreamDefinition,
    parse_streams,
    source_kind,
)
from vidpipe.stream_status import STATUS_TOPIC

# --- names and ports -------------------------------------------------------------------------

PART_OF = "vidpipe"
# Managed node groups carry this label (cdk_app); the charts' nodeSelectors pin pods to a pool.
NODE_POOL_LABEL = "vidpipe.io/pool"
GENERAL_POOL = "general"
INFERENCE_POOL = "inference"
NODE_POOLS = (GENERAL_POOL, INFERENCE_POOL)

# MSK's SASL/IAM listeners (TLS): the security-group rule and the pods' egress NetworkPolicy.
MSK_IAM_PORT = 9098

# The archive bucket: the consumer's CONSUMER_ARCHIVE_URI points at ARCHIVE_PREFIX, under which the
# services write their own layout (vidpipe.storage); models live beside it.
ARCHIVE_PREFIX = "archive/"
FRAMES_PREFIX = ARCHIVE_PREFIX + storage.FRAMES_PREFIX
RESULTS_PREFIX = ARCHIVE_PREFIX + storage.RESULTS_PREFIX
MODELS_PREFIX = "models/"
# The inference pods' start-up accuracy gate keeps its verdicts here (INFERENCE_GATE_CACHE_URI), beside the model,
# so a pod on a CPU model the gate has judged serves without running it again.
GATE_VERDICTS_PREFIX = "gate-verdicts/"

# Camera URLs live in one Secret the user creates, mounted into every publisher pod: a stream's source
# `secret:<key>` is the file <CAMERA_SOURCES_DIR>/<key> (PUBLISHER_SOURCES_DIR).
CAMERA_SECRET = "vidpipe-camera-sources"
CAMERA_SOURCES_DIR = "/var/run/vidpipe/sources"
# The publishers' consumer group on the registry topic (PUBLISHER_GROUP_ID; the publisher's own default):
# the charts set it and the publisher identity's grant names it, so the two cannot drift.
PUBLISHER_GROUP = "vidpipe-publishers"
# The stream the optional in-cluster RTSP test source publishes (added to the registry seed).
TEST_SOURCE_STREAM = "test-source"


def archive_bucket_name(prefix: str, account: str, region: str) -> str:
    """Unique per environment, account and region. The CDK app passes the pseudo parameters (tokens),
    cdk-nag's acknowledgements their rendering (<AWS::AccountId>): one spelling for both."""
    return f"{prefix}-archive-{account}-{region}"


def kafka_resource(kind: str, cluster_name: str, name: str | None = None) -> str:
    """The resource part of an MSK IAM ARN (after `arn:<partition>:kafka:<region>:<account>:`).

    The cluster's UUID is only known after deployment: a `*` in its place keeps a grant on this
    cluster name (cluster, topic/<cluster>/*/<topic>, group/<cluster>/*/<group>).
    """
    if kind == "cluster":
        return f"cluster/{cluster_name}/*"
    if kind in ("topic", "group") and name:
        return f"{kind}/{cluster_name}/*/{name}"
    raise ValueError(f"no MSK IAM resource {kind!r} named {name!r}")


# --- stack outputs ---------------------------------------------------------------------------


def output_key(name: str, suffix: str) -> str:
    """A CfnOutput id from a Kubernetes-style name: ("frame-publisher", "ServiceAccount") ->
    "FramePublisherServiceAccount". The compute stack writes these ids; the charts read them."""
    return "".join(part.capitalize() for part in name.split("-")) + suffix


class OutputKeys:
    """CfnOutput ids of the CDK app that are not per service (those come from the units: see
    vidpipe_deploy.units.ServiceUnit.outputs). Stack level, so never hash-suffixed."""

    REGION = "Region"
    CLUSTER_NAME = "ClusterName"
    KUBECONFIG_COMMAND = "KubeconfigCommand"
    KAFKA_BOOTSTRAP = "KafkaBootstrapBrokersSaslIam"
    KAFKA_CLUSTER_ARN = "KafkaClusterArn"
    ARCHIVE_BUCKET = "ArchiveBucketName"
    ACCESS_LOG_BUCKET = "AccessLogBucketName"
    ARCHIVE_URI = "ArchiveUri"
    MODEL_URI = "ModelUri"
    NAMESPACE = "Namespace"
    VPC_CIDR = "VpcCidr"
    # The one Secrets Manager secret holding the API token (inference and analytics check it, the consumer sends it).
    API_TOKEN_SECRET_ARN = "ApiTokenSecretArn"
    # The sha256 of the model file the CDK app uploaded (INFERENCE_MODEL_SHA256).
    MODEL_SHA256 = "ModelSha256"
    # When present KEDA assumes this role (podIdentity.roleArn); otherwise it uses the operator's own
    # Pod Identity (identityOwner: keda), which is what the CDK app sets up.
    SERVICE_ACCOUNT = "ServiceAccount"  # suffixes of the per-identity outputs
    ROLE_ARN = "RoleArn"
    IMAGE_URI = "ImageUri"


# --- validators ------------------------------------------------------------------------------

# CDK encodes unresolved string values as "${Token[...]}" (possibly inside a longer string).
TOKEN = re.compile(r"\$\{Token\[[^\]]+\]\}")
K8S_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
K8S_SECRET_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
TOPIC_NAME = r"^[a-zA-Z0-9._-]{1,249}$"
REGION = r"^[a-z]{2}(-[a-z]+)+-\d$"
IMAGE = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?"
    r"(@sha256:[0-9a-f]{64})?$"
)
_PARTITION = r"arn:aws[a-z-]*"
ACCOUNT_ID = r"\d{12}"
# An IAM role (a path is allowed) or user; never an STS assumed-role session (EKS refuses those).
IAM_PRINCIPAL_ARN = rf"^{_PARTITION}:iam::{ACCOUNT_ID}:(role|user)/[\w+=,.@/-]{{1,512}}$"
IAM_ROLE_ARN = rf"^{_PARTITION}:iam::{ACCOUNT_ID}:role/[\w+=,.@/-]+$"
STS_SESSION_ARN = rf"^{_PARTITION}:sts::{ACCOUNT_ID}:assumed-role/.+$"
GITHUB_OIDC_PROVIDER_ARN = rf"^{_PARTITION}:iam::{ACCOUNT_ID}:oidc-provider/token\.actions\.githubusercontent\.com$"
# A complete ARN (with the 6-character suffix Secrets Manager adds), so IAM grants exactly one secret.
SECRET_ARN = rf"^{_PARTITION}:secretsmanager:[a-z0-9-]+:{ACCOUNT_ID}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{{6}}$"


def is_token(value: object) -> bool:
    """True when a string holds an unresolved CDK token (resolved only when CloudFormation deploys)."""
    return isinstance(value, str) and bool(TOKEN.search(value))


def check(pattern: str, value: str, what: str) -> str:
    """`value` unless it is a literal that does not match: ValueError "'<value>' is not <what>"."""
    if not is_token(value) and not re.fullmatch(pattern.strip("^$"), value):
        raise ValueError(f"{value!r} is not {what}")
    return value


def check_secret_arn(value: str) -> str:
    return check(
        SECRET_ARN,
        value,
        "a complete Secrets Manager secret ARN "
        "(arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>)",
    )


def check_region(value: str) -> str:
    return check(REGION, value, "an AWS region such as eu-west-1")


def check_ipv4_cidr(value: str, *, exact: bool = True) -> ipaddress.IPv4Network:
    """An IPv4 CIDR; `exact`: host bits must be zero (what an allow-list means)."""
    try:
        network = ipaddress.ip_network(value, strict=exact) if "/" in value else None
    except ValueError:
        network = None
    if not isinstance(network, ipaddress.IPv4Network):
        example = "'203.0.113.7/32' (host bits zero)" if exact else "'10.40.0.0/16'"
        raise ValueError(f"{value!r} is not an IPv4 CIDR such as {example}")
    return network


# --- the two configuration models both sides read -------------------------------------------


class FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Topics(FrozenModel):
    """Topic names, the consumer group and the partition count: CDK context `vidpipe:topics`,
    the charts' `topics` setting. Defaults are the services' contract."""

    frames: Annotated[str, Field(pattern=TOPIC_NAME)] = FRAMES_TOPIC
    results: Annotated[str, Field(pattern=TOPIC_NAME)] = RESULTS_TOPIC
    dead_letter: Annotated[str, Field(pattern=TOPIC_NAME, alias="deadLetter")] = DEAD_LETTER_TOPIC
    events: Annotated[str, Field(pattern=TOPIC_NAME)] = EVENTS_TOPIC
    consumer_group: Annotated[str, Field(pattern=TOPIC_NAME, alias="consumerGroup")] = CONSUMER_GROUP
    partitions: int = Field(default=DEFAULT_PARTITIONS, ge=1, le=1000)
    # The stream registry (compacted; its partitions bound the publisher pods that carry streams) and each
    # stream's status.
    streams: Annotated[str, Field(pattern=TOPIC_NAME)] = STREAMS_TOPIC
    streams_status: Annotated[str, Field(pattern=TOPIC_NAME, alias="streamsStatus")] = STATUS_TOPIC
    streams_partitions: int = Field(default=REGISTRY_PARTITIONS, ge=1, le=1000, alias="streamsPartitions")

    @property
    def all(self) -> tuple[str, ...]:
        return (self.frames, self.results, self.dead_letter, self.events, self.streams, self.streams_status)

    @property
    def analytics_group(self) -> str:
        """The analytics service's group: the contract's, not a setting, since no variable passes another
        name to the service (its IAM grant and the group it joins must be the same)."""
        return ANALYTICS_GROUP

    @property
    def reader_group(self) -> str:
        """The group id the registry and status followers name (never joined: vidpipe.contract.READER_GROUP)."""
        return READER_GROUP

    @property
    def publisher_group(self) -> str:
        """The publishers' group on the registry topic (PUBLISHER_GROUP_ID, set by the charts)."""
        return PUBLISHER_GROUP


DeadLetterPayload = Literal["full", "headers"]


class DeadLetters(FrozenModel):
    """What the dead-letter topic keeps, and for how long: CDK context `vidpipe:deadLetters`, the charts'
    `dead_letters` setting. The topic creators (publisher, consumer) get TOPICS_DEAD_LETTER_RETENTION_HOURS,
    the consumer CONSUMER_DEAD_LETTER_PAYLOAD.

    The defaults keep no footage: "headers" writes the original headers and the error, never the image
    (the services' own default is "full"). A topic that already exists keeps the retention it was created
    with (see docs/DEPLOY.md, "Retention and erasure").
    """

    retention_hours: float = Field(
        default=168.0, gt=0, le=8760, validation_alias=AliasChoices("retention_hours", "retentionHours")
    )
    payload: DeadLetterPayload = "headers"


def parse_seed(document: Any, where: str = "streams") -> list[StreamDefinition]:
    """The registry seed (a list of stream definitions in the registry's format: id, source by reference,
    target_fps, lines, zones...), validated by the registry's own code: ValueError listing every problem,
    each named by its key (`streams[lobby].zones[0].polygon`), never repeating a source's value."""
    if document is None:
        return []
    if isinstance(document, list) and all(isinstance(d, StreamDefinition) for d in document):
        return list(document)
    try:
        return list(parse_streams(document, where).values())
    except RegistryError as exc:
        raise ValueError("\n  ".join(exc.problems)) from None


def secrets_manager_sources(streams: list[StreamDefinition]) -> list[str]:
    """The Secrets Manager ARNs the streams' sources name (their publishers read them with their identity)."""
    return sorted({s.source for s in streams if source_kind(s.source) == "secrets_manager"})


def camera_secret_keys(streams: list[StreamDefinition]) -> list[str]:
    """The keys of the camera Secret the streams' sources name (`secret:<key>`)."""
    return sorted({s.source.removeprefix(SECRET_PREFIX) for s in streams if source_kind(s.source) == "secret"})
