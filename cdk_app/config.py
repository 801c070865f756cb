"""Deployment configuration: CDK context (cdk.json, `-c key=value`) parsed once into a typed object.

Every key lives under the `vidpipe:` prefix so `cdk deploy -c vidpipe:brokerInstanceType=...`
overrides one value. Values given on the command line arrive as strings; pydantic coerces them
("3" -> 3, "false" -> False, JSON for lists). A bad value stops synth with a message naming the key.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# One contract: topic names, group, partitions, size limits and stream definitions come from the services'
# own module (the vidpipe package, services/shared), never a copy; the deploy facts both the CDK app and the
# charts use (Topics, the seed's parser, validators) from vidpipe_deploy.facts.
from vidpipe.contract import MAX_MESSAGE_BYTES
from vidpipe.stream_registry import StreamDefinition
from vidpipe_deploy import sizing
from vidpipe_deploy.facts import (
    GITHUB_OIDC_PROVIDER_ARN,
    IAM_PRINCIPAL_ARN,
    K8S_NAME,
    STS_SESSION_ARN,
    DeadLetters,
    Topics,
    check_ipv4_cidr,
    check_secret_arn,
    parse_seed,
    secrets_manager_sources,
)
from vidpipe_deploy.figures import FiguresError

CONTEXT_PREFIX = "vidpipe:"

# The Kubernetes minor the cluster runs, in EKS standard support (14 months from its EKS release; 1.33 left
# it in mid-2026). One number, kept equal by tests/infra: the kubectl layer (aws-cdk.lambda-layer-kubectl-v36),
# cdk8s-plus-36 and the manifests' schema check (cdk8s_app/validate.py). An upgrade changes all four.
KUBERNETES_VERSION = "1.36"

# Context keys that were renamed: a clear message instead of "unknown key".
RENAMED_KEYS = {"adminRoleArn": "adminPrincipalArn"}
# Context keys that are gone, and where their values go now.
REMOVED_KEYS = {
    "analytics": "lines and zones are part of each stream's definition: move vidpipe:analytics.<id>.lines and "
    ".zones into the entry of vidpipe:streams with that id",
}

ADMIN_PRINCIPAL_KEY = CONTEXT_PREFIX + "adminPrincipalArn"
_GITHUB_REPOSITORY = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"

# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)

# One address, no display name: SNS takes the endpoint as given and mails a confirmation link to it.
_EMAIL = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
_NAME = r"^[a-z][a-z0-9-]{0,15}$"  # bucket names: vidpipe-<env>-archive-<account>-<region> <= 63


class ConfigError(ValueError):
    """The context holds a value that cannot be deployed; the message names the context key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NodeGroupConfig(_Model):
    """One managed node group (instance types, scaling bounds)."""

    instance_types: list[str] = Field(alias="instanceTypes", min_length=1)
    min_size: int = Field(alias="minSize", ge=0, le=100)
    desired_size: int = Field(alias="desiredSize", ge=0, le=100)
    max_size: int = Field(alias="maxSize", ge=1, le=100)
    disk_size_gib: int = Field(default=40, alias="diskSizeGiB", ge=20, le=1000)

    @field_validator("instance_types")
    @classmethod
    def _instance_types(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9]+", name):
                raise ValueError(f"{name!r} is not an EC2 instance type such as 'm6i.large'")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> NodeGroupConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"needs minSize <= desiredSize <= maxSize, got {self.min_size} / {self.desired_size} / {self.max_size}"
            )
        return self


class PlatformConfig(_Model):
    """Everything a deployment may vary; the defaults are a small production-shaped environment."""

    environment: Annotated[str, Field(pattern=_NAME)] = "dev"
    termination_protection: bool = Field(default=True, alias="terminationProtection")

    # Network
    max_azs: int = Field(default=3, alias="maxAzs", ge=2, le=3)
    nat_gateways: int = Field(default=1, alias="natGateways", ge=1, le=3)
    vpc_cidr: str = Field(default="10.40.0.0/16", alias="vpcCidr", pattern=r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-4])$")
    flow_log_retention_days: int = Field(default=30, alias="flowLogRetentionDays", ge=1)

    # EKS
    # Only the version the kubectl layer, cdk8s-plus and the schema check are for (KUBERNETES_VERSION).
    kubernetes_version: Literal["1.36"] = Field(default=KUBERNETES_VERSION, alias="kubernetesVersion")
    # Required: the IAM role or user that gets cluster admin (kubectl). No default: see load_config.
    admin_principal_arn: str | None = Field(default=None, alias="adminPrincipalArn")
    # [] (default): the API server endpoint is private (reachable from the VPC only); otherwise public
    # from exactly these IPv4 CIDRs, and private.
    endpoint_public_cidrs: list[str] = Field(default_factory=list, alias="endpointPublicCidrs")
    namespace: Annotated[str, Field(pattern=K8S_NAME)] = "vidpipe"
    general_nodes: NodeGroupConfig = Field(
        default=NodeGroupConfig(instanceTypes=["m6i.large"], minSize=2, desiredSize=2, maxSize=4),
        alias="generalNodes",
    )
    # One inference pod per node, sized from the committed figures of the type's CPU class
    # (vidpipe_deploy/sizing.py, figures.json). c7i (Sapphire Rapids) computes bf16 on AMX, which the service
    # serves after its accuracy gate; c8i (Granite Rapids, AMX), m7i (c7i's cores, twice the memory) and c7a
    # (Zen 4, AVX512-BF16 without AMX) are the other bf16 choices; c6i (Ice Lake) serves f32 only.
    inference_nodes: NodeGroupConfig = Field(
        default=NodeGroupConfig(instanceTypes=[sizing.DEFAULT_NODE_TYPE], minSize=1, desiredSize=2, maxSize=6),
        alias="inferenceNodes",
    )
    keda_chart_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = Field(
        default="2.18.0", alias="kedaChartVersion"
    )

    # MSK
    kafka_version: Literal["3.8.x", "3.9.x"] = Field(default="3.9.x", alias="kafkaVersion")
    brokers_per_az: int = Field(default=1, alias="brokersPerAz", ge=1, le=10)
    broker_instance_type: str = Field(
        default="kafka.m7g.large", alias="brokerInstanceType", pattern=r"^kafka\.[a-z0-9]+\.[a-z0-9]+$"
    )
    broker_volume_gib: int = Field(default=100, alias="brokerVolumeGiB", ge=1, le=16384)
    replication_factor: int = Field(default=3, alias="replicationFactor", ge=1, le=3)
    min_insync_replicas: int = Field(default=2, alias="minInsyncReplicas", ge=1, le=3)
    broker_log_retention_days: int = Field(default=30, alias="brokerLogRetentionDays", ge=1)
    topics: Topics = Topics()

    # Archive bucket: retention and erasure (docs/DEPLOY.md "Retention and erasure"). Camera footage is kept
    # 30 days unless configured otherwise (down to 1); an expired or deleted object's last version goes
    # noncurrentVersionsExpireAfterDays later. No transition by default: S3 bills Standard-IA for 30 days
    # at least, so it only pays for frames kept well beyond that.
    frames_expire_after_days: int = Field(default=30, alias="framesExpireAfterDays", ge=1, le=36500)
    frames_ia_after_days: int | None = Field(default=None, alias="framesInfrequentAccessAfterDays", ge=30)
    results_expire_after_days: int = Field(default=365, alias="resultsExpireAfterDays", ge=1, le=36500)
    noncurrent_expire_after_days: int = Field(default=1, alias="noncurrentVersionsExpireAfterDays", ge=1, le=36500)
    access_log_expire_after_days: int = Field(default=90, alias="accessLogExpireAfterDays", ge=1, le=36500)
    # A CloudTrail trail recording every read of the archive (S3 data events, read-only): who saw which frame.
    # Off by default: it costs per event (docs/DEPLOY.md "Auditing reads").
    audit_archive_reads: bool = Field(default=False, alias="auditArchiveReads")
    audit_log_expire_after_days: int = Field(default=365, alias="auditLogExpireAfterDays", ge=1, le=36500)
    # What the dead-letter topic keeps (headers only by default: no image) and for how long.
    dead_letters: DeadLetters = Field(default=DeadLetters(), alias="deadLetters")

    # Network: an S3 interface endpoint (private DNS for the whole VPC) lets the NetworkPolicies open HTTPS to
    # S3 at the VPC CIDR instead of any address, at a per-GB charge the free gateway endpoint does not have.
    s3_interface_endpoint: bool = Field(default=False, alias="s3InterfaceEndpoint")
    # The namespace of the Prometheus allowed to scrape the services' ops ports (NetworkPolicy); null or "": none.
    metrics_namespace: Annotated[str, Field(pattern=K8S_NAME)] | None = Field(
        default="monitoring", alias="metricsNamespace"
    )

    # Observability (docs/DEPLOY.md "Metrics, alerts and logs"): an Amazon Managed Service for Prometheus workspace
    # with a managed scraper, the alert rules and an alert manager routing to SNS, and container logs in
    # CloudWatch Logs. Off: none of it (small test deployments skip its cost).
    observability: bool = True
    # Where the alerts go by email (an SNS email subscription, confirmed by its recipient); null or "": none.
    alert_email: str | None = Field(default=None, alias="alertEmail")
    container_log_retention_days: int = Field(default=30, alias="containerLogRetentionDays", ge=1)

    # Model shipped to s3://<bucket>/models/ (produced by `make model`)
    model_dir: str = Field(default=".cache/models", alias="modelDir", min_length=1)
    model_file: str = Field(default="yolov4-tiny.onnx", alias="modelFile", pattern=r"^[A-Za-z0-9._-]+\.onnx$")

    # Workloads
    # The stream registry's seed, in the registry's format (the charts' `streams` setting): id, source by
    # reference (secret:<key> of the camera Secret, a Secrets Manager ARN, a URL without credentials),
    # target_fps, lines, zones... A run-once Job applies it through the analytics service, without pruning.
    streams: list[StreamDefinition] = Field(default_factory=list)
    rtsp_test_source: bool = Field(default=False, alias="rtspTestSource")  # pulls a public image
    # The TCP ports the publishers may reach cameras on, at any address outside the cluster.
    camera_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [554, 8554], alias="cameraPorts", min_length=1
    )
    # Secrets Manager secrets holding camera URLs the publishers may read, besides those the seed names.
    camera_secret_arns: list[str] = Field(default_factory=list, alias="cameraSecretArns")
    # Enabled streams per publisher pod: KEDA keeps ceil(enabled / this) publisher pods (2 at least).
    publisher_streams_per_pod: int = Field(default=25, alias="publisherStreamsPerPod", ge=1, le=1000)
    # Fixed, not autoscaled: the partition count bounds the analytics group's useful members.
    analytics_replicas: int = Field(default=1, alias="analyticsReplicas", ge=1, le=1000)

    # CI/CD: the GitHub OIDC deploy role (stack <prefix>-deploy-access), only when githubRepository is set.
    github_repository: str | None = Field(default=None, alias="githubRepository")  # "owner/name"
    github_environment: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,255}$")] = Field(
        default="production", alias="githubEnvironment"
    )
    # An account has one provider per URL: import an existing one instead of creating it.
    github_oidc_provider_arn: str | None = Field(default=None, alias="githubOidcProviderArn")

    @field_validator("admin_principal_arn")
    @classmethod
    def _admin_principal(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if re.fullmatch(STS_SESSION_ARN, value):
            raise ValueError(
                f"{value!r} is a temporary session, which EKS access entries refuse: give the role itself, "
                "arn:aws:iam::<account>:role/<name> (the name is the part after assumed-role/)"
            )
        if not re.fullmatch(IAM_PRINCIPAL_ARN, value):
            raise ValueError(
                f"{value!r} is not an IAM role or user ARN "
                "(arn:aws:iam::<account>:role/<name> or arn:aws:iam::<account>:user/<name>)"
            )
        return value

    @field_validator("streams", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> list[StreamDefinition]:
        # The registry's own validation: each problem names its key (streams[lobby].zones[0].polygon), never a
        # source's value.
        return parse_seed(value)

    @field_validator("camera_secret_arns")
    @classmethod
    def _camera_secret_arns(cls, value: list[str]) -> list[str]:
        return [check_secret_arn(arn) for arn in value]

    @field_validator("metrics_namespace", mode="before")
    @classmethod
    def _no_metrics_namespace(cls, value: Any) -> Any:
        # `-c vidpipe:metricsNamespace=` (empty) turns the scrape policies off, as null does in cdk.json.
        return None if value == "" else value

    @field_validator("alert_email")
    @classmethod
    def _alert_email(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(_EMAIL, value):
            raise ValueError(f"{value!r} is not an email address such as 'ops@example.com'")
        return value

    @field_validator("github_repository")
    @classmethod
    def _github_repository(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(_GITHUB_REPOSITORY, value):
            raise ValueError(f"{value!r} is not a GitHub repository 'owner/name'")
        return value

    @field_validator("github_oidc_provider_arn")
    @classmethod
    def _github_oidc_provider(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(GITHUB_OIDC_PROVIDER_ARN, value):
            raise ValueError(
                f"{value!r} is not the ARN of GitHub's OIDC provider "
                "(arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com)"
            )
        return value

    @field_validator("flow_log_retention_days", "broker_log_retention_days", "container_log_retention_days")
    @classmethod
    def _log_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"{value} is not a CloudWatch Logs retention; use one of {LOG_RETENTION_DAYS}")
        return value

    @field_validator("endpoint_public_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            check_ipv4_cidr(cidr)
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate CIDRs in {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PlatformConfig:
        if self.admin_principal_arn is None:
            # Access entries (authentication mode API) are the only way into the cluster: without one
            # for you, only CloudFormation's role could use kubectl.
            raise ConfigError(
                f"context key {ADMIN_PRINCIPAL_KEY} is required: the IAM role or user that gets cluster admin "
                f"(kubectl), e.g. `npx cdk deploy --all -c {ADMIN_PRINCIPAL_KEY}=arn:aws:iam::<account>:role/<name>` "
                f"or `make deploy ADMIN_PRINCIPAL_ARN=...` (see docs/DEPLOY.md)"
            )
        brokers = self.brokers_per_az * self.max_azs
        if self.replication_factor > brokers:
            raise ConfigError(
                f"{CONTEXT_PREFIX}replicationFactor ({self.replication_factor}) exceeds the broker count "
                f"({brokers} = {CONTEXT_PREFIX}brokersPerAz x {CONTEXT_PREFIX}maxAzs)"
            )
        if self.min_insync_replicas > self.replication_factor:
            raise ConfigError(
                f"{CONTEXT_PREFIX}minInsyncReplicas ({self.min_insync_replicas}) exceeds "
                f"{CONTEXT_PREFIX}replicationFactor ({self.replication_factor})"
            )
        if self.nat_gateways > self.max_azs:
            raise ConfigError(
                f"{CONTEXT_PREFIX}natGateways ({self.nat_gateways}) exceeds {CONTEXT_PREFIX}maxAzs ({self.max_azs})"
            )
        if self.frames_ia_after_days is not None and self.frames_expire_after_days <= self.frames_ia_after_days:
            raise ConfigError(
                f"{CONTEXT_PREFIX}framesExpireAfterDays ({self.frames_expire_after_days}) must be later than "
                f"{CONTEXT_PREFIX}framesInfrequentAccessAfterDays ({self.frames_ia_after_days})"
            )
        self._inference_sizing()
        if self.analytics_replicas > self.topics.partitions:
            raise ConfigError(
                f"{CONTEXT_PREFIX}analyticsReplicas ({self.analytics_replicas}) exceeds {CONTEXT_PREFIX}topics.partitions"
                f" ({self.topics.partitions}): members of the analytics group beyond the partition count sit idle"
            )
        return self

    def _inference_sizing(self) -> None:
        """Every inference instance type has committed figures, and the same pod fits all of them: the pod is
        sized once, for the node group."""
        key = f"{CONTEXT_PREFIX}inferenceNodes.instanceTypes"
        try:
            pods = {t: sizing.for_node(t) for t in self.inference_nodes.instance_types}
        except FiguresError as exc:
            raise ConfigError(f"context key {key}: {exc}") from None
        shapes = {(p.cpu_request_m, p.memory_mi, p.inference_fps) for p in pods.values()}
        if len(shapes) > 1:
            raise ConfigError(
                f"context key {key}: {', '.join(pods)} give inference pods of different sizes or throughput; "
                "one node group holds one shape (same vCPUs and CPU class)"
            )

    @property
    def camera_secrets_manager_arns(self) -> list[str]:
        """The Secrets Manager secrets the publishers' identity may read: the seed's, and cameraSecretArns."""
        return sorted({*secrets_manager_sources(self.streams), *self.camera_secret_arns})

    @property
    def inference_node_type(self) -> str:
        """The node type the inference pod is sized for (all of the group's types give the same pod)."""
        return self.inference_nodes.instance_types[0]

    @property
    def broker_count(self) -> int:
        return self.brokers_per_az * self.max_azs

    @property
    def prefix(self) -> str:
        """Resource-name prefix: unique per environment within an account and region."""
        return f"vidpipe-{self.environment}"

    @property
    def kafka_cluster_name(self) -> str:
        return self.prefix

    def server_properties(self) -> str:
        """The MSK cluster configuration: contract limits, no broker auto-create."""
        lines = {
            "auto.create.topics.enable": "false",
            "default.replication.factor": str(self.replication_factor),
            "min.insync.replicas": str(self.min_insync_replicas),
            "num.partitions": str(self.topics.partitions),
            # Frames are JPEGs up to 4 MiB; the topics accept up to 8 MiB (contract MAX_MESSAGE_BYTES).
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
            "unclean.leader.election.enable": "false",
        }
        return "".join(f"{k}={v}\n" for k, v in lines.items())


def _field_key(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as the context key the user wrote (aliases), e.g. vidpipe:topics.partitions."""
    fields = PlatformConfig.model_fields
    parts: list[str] = []
    for i, item in enumerate(loc):
        if i == 0 and isinstance(item, str) and item in fields:
            item = fields[item].alias or item
        parts.append(f"[{item}]" if isinstance(item, int) else str(item))
    text = ".".join(parts).replace(".[", "[")
    return CONTEXT_PREFIX + text


def _decode(value: Any) -> Any:
    """`-c key=value` gives strings: a JSON object/list/number is decoded, anything else kept."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load_config(context: dict[str, Any]) -> PlatformConfig:
    """Parse the `vidpipe:*` context keys; raises ConfigError naming the offending key."""
    raw: dict[str, Any] = {}
    for key, value in context.items():
        if key.startswith(CONTEXT_PREFIX):
            raw[key[len(CONTEXT_PREFIX) :]] = _decode(value)
    renamed = sorted(k for k in raw if k in RENAMED_KEYS)
    if renamed:
        raise ConfigError(
            "; ".join(f"context key {CONTEXT_PREFIX}{k} was renamed {CONTEXT_PREFIX}{RENAMED_KEYS[k]}" for k in renamed)
        )
    removed = sorted(k for k in raw if k in REMOVED_KEYS)
    if removed:
        raise ConfigError("; ".join(f"context key {CONTEXT_PREFIX}{k} is gone: {REMOVED_KEYS[k]}" for k in removed))
    known = {f.alias or name for name, f in PlatformConfig.model_fields.items()}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown context key(s) {', '.join(CONTEXT_PREFIX + k for k in unknown)}; "
            f"known keys: {', '.join(sorted(CONTEXT_PREFIX + k for k in known))}"
        )
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if error["loc"] and error["loc"][0] == "streams":
                # Never echo a stream entry: a camera URL given by mistake may hold credentials. The seed's
                # problems name their own keys (streams[lobby].zones[0].polygon), one per line.
                for line in error["msg"].removeprefix("Value error, ").splitlines():
                    problem = line.strip()
                    if problem.startswith("streams["):
                        problems.append(f"context key {CONTEXT_PREFIX}{problem}")
                    else:
                        problems.append(f"context key {_field_key(error['loc'])}: {problem}")
            elif error["loc"]:
                problems.append(f"context key {_field_key(error['loc'])}: {error['msg']} (got {error.get('input')!r})")
            else:
                problems.append(error["msg"].removeprefix("Value error, "))
        raise ConfigError("invalid CDK context (cdk.json or -c):\n  " + "\n  ".join(problems)) from None
