"""The typed wiring between the AWS infrastructure and the Kubernetes workloads.

One `PlatformWiring` feeds the same chart code on two paths:

- CDK path: the CDK compute stack builds it from CDK tokens (bucket names, broker list, image URIs,
  unresolved at synth time, e.g. "${Token[TOKEN.123]}") and adds the charts to the cluster with
  `cluster.add_cdk8s_chart`. Validators therefore accept token strings and check only literal values.
- Standalone path: `PlatformWiring.from_outputs_file(path)` reads what `cdk deploy --outputs-file`
  wrote ({"StackName": {"OutputKey": "value"}}) and `cdk8s synth` writes plain manifests.

Settings that are not stack outputs (streams, RTSP test source, scaling knobs) come from
cdk8s_app/settings.yaml on the standalone path (`load_settings`) and from the CDK app's own
configuration on the CDK path.

This module never imports aws_cdk: it must load in a plain cdk8s process.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vidpipe.contract import CONSUMER_GROUP, DEAD_LETTER_TOPIC, FRAMES_TOPIC, RESULTS_TOPIC
from vidpipe.kafka import normalize_bootstrap

# CDK encodes unresolved string values as "${Token[...]}" (possibly inside a longer string).
_TOKEN = re.compile(r"\$\{Token\[[^\]]+\]\}")
_K8S_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_TOPIC = r"^[a-zA-Z0-9._-]{1,249}$"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_IMAGE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$")

_K8S_SECRET_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# A complete ARN (with the 6-character suffix Secrets Manager adds), so IAM grants exactly one secret.
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$")

# Camera URLs live in Secrets, one per stream unless configured otherwise: <prefix><stream name>, key "source".
STREAM_SECRET_PREFIX = "vidpipe-stream-"
STREAM_SECRET_KEY = "source"

# Pod names are "publisher-<stream>": the stream name may use what is left of a 63-character label.
PUBLISHER_PREFIX = "publisher-"
MSK_IAM_PORT = 9098


def is_token(value: object) -> bool:
    """True when a string holds an unresolved CDK token (resolved only when CloudFormation deploys)."""
    return isinstance(value, str) and bool(_TOKEN.search(value))


class WiringError(ValueError):
    """The wiring cannot be built; the message names the output key or setting at fault."""


class OutputKeys:
    """CfnOutput ids of the CDK app (cdk_app/stacks/compute.py `_outputs`, stack level so not hash-suffixed).

    The one place the cdk8s side names them; change a name here and in the CDK stack together.
    Outputs may live in any stack of the outputs file; a key must not carry two different values.
    """

    REGION = "Region"
    KAFKA_BOOTSTRAP = "KafkaBootstrapBrokersSaslIam"
    ARCHIVE_URI = "ArchiveUri"
    MODEL_URI = "ModelUri"
    PUBLISHER_IMAGE = "PublisherImageUri"
    CONSUMER_IMAGE = "ConsumerImageUri"
    INFERENCE_IMAGE = "InferenceImageUri"
    REQUIRED = (REGION, KAFKA_BOOTSTRAP, ARCHIVE_URI, MODEL_URI, PUBLISHER_IMAGE, CONSUMER_IMAGE, INFERENCE_IMAGE)

    # Optional: used when present.
    NAMESPACE = "Namespace"
    PUBLISHER_SERVICE_ACCOUNT = "FramePublisherServiceAccount"
    CONSUMER_SERVICE_ACCOUNT = "ConsumerServiceServiceAccount"
    INFERENCE_SERVICE_ACCOUNT = "InferenceServiceServiceAccount"
    # When present KEDA assumes this role (podIdentity.roleArn); otherwise it uses the operator's own
    # Pod Identity (identityOwner: keda), which is what the CDK app sets up.
    KEDA_SCALER_ROLE_ARN = "KedaScalerRoleArn"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Topics(_Model):
    frames: Annotated[str, Field(pattern=_TOPIC)] = FRAMES_TOPIC
    results: Annotated[str, Field(pattern=_TOPIC)] = RESULTS_TOPIC
    dead_letter: Annotated[str, Field(pattern=_TOPIC, alias="deadLetter")] = DEAD_LETTER_TOPIC


class Images(_Model):
    """Container image URIs (ECR URIs or tokens)."""

    publisher: str
    consumer: str
    inference: str

    @field_validator("publisher", "consumer", "inference")
    @classmethod
    def _image(cls, value: str) -> str:
        if not is_token(value) and not _IMAGE.match(value):
            raise ValueError(f"{value!r} is not an image reference (registry/repository:tag or @sha256:digest)")
        return value


class ServiceAccounts(_Model):
    """ServiceAccount names; the CDK stack creates them (EKS Pod Identity), the charts only reference them."""

    publisher: Annotated[str, Field(pattern=_K8S_LABEL)] = "frame-publisher"
    consumer: Annotated[str, Field(pattern=_K8S_LABEL)] = "consumer-service"
    inference: Annotated[str, Field(pattern=_K8S_LABEL)] = "inference-service"


class KedaAuth(_Model):
    """How KEDA's Kafka scaler signs MSK IAM tokens: exactly one of role_arn / identity_owner.

    identity_owner "keda" uses the KEDA operator's own Pod Identity (the CDK app associates a role
    with the keda-operator ServiceAccount); role_arn makes the operator assume that role.
    """

    role_arn: str | None = Field(default=None, alias="roleArn")
    identity_owner: Literal["keda", "workload"] | None = Field(default="keda", alias="identityOwner")

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value and not is_token(value) and not _ROLE_ARN.match(value):
            raise ValueError(f"{value!r} is not an IAM role ARN")
        return value or None

    @model_validator(mode="before")
    @classmethod
    def _role_wins(cls, data: Any) -> Any:
        # A role ARN given without an explicit owner replaces the default owner (KEDA: mutually exclusive).
        if isinstance(data, dict):
            has_role = data.get("role_arn") or data.get("roleArn")
            has_owner = "identity_owner" in data or "identityOwner" in data
            if has_role and not has_owner:
                data = {**data, "identity_owner": None}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> "KedaAuth":
        if (self.role_arn is None) == (self.identity_owner is None):
            raise ValueError("set exactly one of role_arn and identity_owner (KEDA treats them as mutually exclusive)")
        return self


class StreamSpec(_Model):
    """One camera (or other network source): one publisher Deployment each.

    The source URL is never part of the charts (it may hold credentials, and ConfigMaps and templates
    are readable by far more people than Secrets): the publisher reads PUBLISHER_SOURCE from the
    Kubernetes Secret `secret_name` (key `secret_key`) that you create, or, with `source_secret_arn`,
    reads the URL from AWS Secrets Manager itself at start-up (PUBLISHER_SOURCE_SECRET_ARN).
    """

    name: Annotated[str, Field(pattern=_K8S_LABEL, max_length=63 - len(PUBLISHER_PREFIX))] = Field(
        validation_alias=AliasChoices("name", "id")
    )
    target_fps: float = Field(default=0.0, ge=0.0, le=1000.0, validation_alias=AliasChoices("target_fps", "targetFps"))
    # The camera's TCP port, for the egress NetworkPolicy (the URL, and so its port, is not known here).
    port: int = Field(default=554, ge=1, le=65535, description="TCP port of the source (RTSP: 554)")
    secret_name: Annotated[str, Field(pattern=_K8S_SECRET_NAME, max_length=253)] | None = Field(
        default=None, validation_alias=AliasChoices("secret_name", "secretName"),
        description=f"Kubernetes Secret holding the URL; default {STREAM_SECRET_PREFIX}<name>")
    secret_key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]{1,253}$")] = Field(
        default=STREAM_SECRET_KEY, validation_alias=AliasChoices("secret_key", "secretKey"))
    source_secret_arn: str | None = Field(
        default=None, validation_alias=AliasChoices("source_secret_arn", "sourceSecretArn"),
        description="AWS Secrets Manager secret ARN the publisher reads the URL from (instead of a Kubernetes Secret)")
    service_account: Annotated[str, Field(pattern=_K8S_SECRET_NAME, max_length=253)] | None = Field(
        default=None, validation_alias=AliasChoices("service_account", "serviceAccount"),
        description="ServiceAccount of this publisher (default: the shared publisher one)")

    @model_validator(mode="before")
    @classmethod
    def _no_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "source" in data:
            name = data.get("name") or data.get("id") or "<name>"
            # The message never repeats the value: it may hold credentials.
            raise ValueError(
                f"stream {name}: 'source' is no longer a setting; camera URLs never go into the charts. "
                f"Put the URL in the Kubernetes Secret {STREAM_SECRET_PREFIX}{name} (key {STREAM_SECRET_KEY!r}): "
                f"kubectl create secret generic {STREAM_SECRET_PREFIX}{name} --from-file={STREAM_SECRET_KEY}=<file>, "
                "or in AWS Secrets Manager (source_secret_arn), and set 'port' if it is not 554"
            )
        return data

    @field_validator("source_secret_arn")
    @classmethod
    def _secret_arn(cls, value: str | None) -> str | None:
        if value and not is_token(value) and not _SECRET_ARN.match(value):
            raise ValueError(f"{value!r} is not a complete Secrets Manager secret ARN "
                             "(arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>)")
        return value or None

    @property
    def secret(self) -> str:
        """The Kubernetes Secret the publisher's PUBLISHER_SOURCE comes from (unused with source_secret_arn)."""
        return self.secret_name or f"{STREAM_SECRET_PREFIX}{self.name}"


class RtspTestSource(_Model):
    """An in-cluster RTSP server looping a test video, so a fresh deployment has a live stream.

    Pulls public images (mediamtx from Docker Hub); off by default. Without video_url, ffmpeg renders
    its built-in test pattern; with it, ffmpeg loops that video (HTTPS egress is opened for it).
    """

    enabled: bool = False
    image: str = "docker.io/bluenviron/mediamtx:1.12.3-ffmpeg"
    video_url: str | None = Field(default=None, alias="videoUrl")
    path: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")] = "test"
    fps: int = Field(default=15, ge=1, le=60)
    stream_name: Annotated[str, Field(pattern=_K8S_LABEL)] = Field(default="test-source", alias="streamName")

    @model_validator(mode="before")
    @classmethod
    def _from_flag(cls, data: Any) -> Any:
        # The CDK app's configuration carries a plain on/off flag.
        return {"enabled": data} if isinstance(data, bool) else data

    @field_validator("video_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme != "https":
            raise ValueError(f"{value!r}: the test video must be an https:// URL")
        return value or None


class Resources(_Model):
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


class Scaling(_Model):
    """Replica bounds and the measured throughput the KEDA lag thresholds derive from.

    lagThreshold = throughput per replica (frames/s) x latency budget (s): the backlog one replica
    clears within the budget. See docs/KEDA_KAFKA_LAG.md for the measurements and the derivation.
    """

    # Measured on 2 cores with the default model (YOLOv4-tiny 416x416): bench/ and docs/KEDA_KAFKA_LAG.md.
    pipeline_fps_per_replica: float = Field(default=52.0, gt=0, description="consumer+inference pair, end to end")
    inference_fps_per_replica: float = Field(default=58.0, gt=0, description="inference service alone")
    latency_budget_s: float = Field(default=2.0, gt=0, le=60)

    consumer_min_replicas: int = Field(default=1, ge=1, description=">= 1: a group that never committed can stay at zero")
    consumer_max_replicas: int | None = Field(default=None, ge=1, description="default: the partition count")
    inference_min_replicas: int = Field(default=1, ge=1)
    inference_max_replicas: int | None = Field(default=None, ge=1, description="default: the partition count")
    polling_interval_s: int = Field(default=15, ge=5, le=300)
    scale_down_stabilization_s: int = Field(default=300, ge=0, le=3600)

    @property
    def consumer_lag_threshold(self) -> int:
        return max(1, math.floor(self.pipeline_fps_per_replica * self.latency_budget_s))

    @property
    def inference_lag_threshold(self) -> int:
        return max(1, math.floor(self.inference_fps_per_replica * self.latency_budget_s))


class WorkloadResources(_Model):
    publisher: Resources = Resources(cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi")
    consumer: Resources = Resources(cpu_request="500m", cpu_limit="1", memory_request="512Mi", memory_limit="1Gi")
    # The model runs with 2 intra-op threads (the measured configuration); 1.5 CPUs requested so one
    # pod fits a 2-vCPU share of a 4-vCPU node next to the daemonsets.
    inference: Resources = Resources(cpu_request="1500m", cpu_limit="2", memory_request="1Gi", memory_limit="2Gi")
    inference_threads: int = Field(default=2, ge=1, le=64)


class NodeSelectors(_Model):
    """Node labels per pool; the defaults match the CDK app's managed node groups (vidpipe.io/pool)."""

    inference: dict[str, str] = Field(default_factory=lambda: {"vidpipe.io/pool": "inference"})
    general: dict[str, str] = Field(default_factory=lambda: {"vidpipe.io/pool": "general"})


class PlatformWiring(_Model):
    """Everything the charts need; build it from CDK tokens or from an outputs file."""

    region: str
    namespace: Annotated[str, Field(pattern=_K8S_LABEL)] = "vidpipe"
    create_namespace: bool = Field(default=True, description="off on the CDK path: the stack creates it")
    kafka_bootstrap: str
    kafka_auth: Literal["msk-iam", "none"] = "msk-iam"
    kafka_tls: bool = True
    kafka_port: int = Field(default=MSK_IAM_PORT, ge=1, le=65535, description="egress port when the broker list is a token")
    vpc_cidr: str | None = Field(default=None, description="limits Kafka egress to the VPC; default any address")
    topics: Topics = Topics()
    consumer_group: Annotated[str, Field(pattern=_TOPIC)] = CONSUMER_GROUP
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    topics_create: bool = Field(default=True, description="services create missing topics at start-up")
    archive_uri: str
    model_uri: str
    images: Images
    service_accounts: ServiceAccounts = ServiceAccounts()
    keda: KedaAuth = KedaAuth()
    streams: list[StreamSpec] = Field(default_factory=list)
    rtsp_test_source: RtspTestSource = RtspTestSource()
    scaling: Scaling = Scaling()
    resources: WorkloadResources = WorkloadResources()
    node_selectors: NodeSelectors = NodeSelectors()
    # No workload calls the Kubernetes API. The EKS Pod Identity webhook mounts its own token volume,
    # so the API token stays off; turn this on only if credentials fail on a given EKS version.
    automount_service_account_token: bool = False
    consumer_max_frame_age_ms: int = Field(default=0, ge=0, description="skip frames older than this (live streams)")
    metrics_namespace: Annotated[str, Field(pattern=_K8S_LABEL)] | None = Field(
        default=None, description="namespace of a Prometheus allowed to scrape /metrics"
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not is_token(value) and not _REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region such as eu-west-1")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        return value if is_token(value) else normalize_bootstrap(value)

    @field_validator("archive_uri", "model_uri")
    @classmethod
    def _s3_uri(cls, value: str) -> str:
        # A token may stand for the bucket inside the URI ("s3://${Token[..]}/archive") or for all of it.
        if value.startswith("s3://") and len(value) > len("s3://"):
            return value.rstrip("/")
        if is_token(value) and _TOKEN.fullmatch(value):
            return value
        raise ValueError(f"{value!r} is not an s3://bucket/key URI")

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value and not is_token(value) and not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}", value):
            raise ValueError(f"{value!r} is not an IPv4 CIDR")
        return value or None

    @model_validator(mode="after")
    def _consistent(self) -> "PlatformWiring":
        names = [s.name for s in self.all_streams]
        if len(names) != len(set(names)):
            raise ValueError(f"stream names must be unique, got {names}")
        if self.kafka_auth == "msk-iam" and not self.kafka_tls:
            raise ValueError("kafka_auth msk-iam always uses TLS: kafka_tls must be true")
        if self.consumer_max_replicas > self.topic_partitions:
            raise ValueError(
                f"scaling.consumer_max_replicas ({self.consumer_max_replicas}) exceeds topic_partitions"
                f" ({self.topic_partitions}): consumers beyond the partition count sit idle"
            )
        if self.consumer_max_replicas < self.scaling.consumer_min_replicas:
            raise ValueError("scaling.consumer_max_replicas is below scaling.consumer_min_replicas")
        if self.inference_max_replicas < self.scaling.inference_min_replicas:
            raise ValueError("scaling.inference_max_replicas is below scaling.inference_min_replicas")
        return self

    # ---- derived values -------------------------------------------------------------------

    @property
    def consumer_max_replicas(self) -> int:
        return self.scaling.consumer_max_replicas or self.topic_partitions

    @property
    def inference_max_replicas(self) -> int:
        return self.scaling.inference_max_replicas or self.topic_partitions

    @property
    def kafka_ports(self) -> list[int]:
        """Broker ports for NetworkPolicy egress, from the broker list when it is known."""
        if is_token(self.kafka_bootstrap):
            return [self.kafka_port]
        return sorted({int(h.rpartition(":")[2]) for h in self.kafka_bootstrap.split(",")})

    @property
    def test_source_service(self) -> str:
        return "rtsp-test-source"

    @property
    def test_source_url(self) -> str:
        return f"rtsp://{self.test_source_service}.{self.namespace}.svc:8554/{self.rtsp_test_source.path}"

    @property
    def all_streams(self) -> list[StreamSpec]:
        """Configured streams plus the in-cluster test source when it is enabled."""
        streams = list(self.streams)
        if self.has_test_stream:
            test = self.rtsp_test_source
            streams.append(StreamSpec(name=test.stream_name, target_fps=0, port=8554))
        return streams

    @property
    def has_test_stream(self) -> bool:
        test = self.rtsp_test_source
        return test.enabled and not any(s.name == test.stream_name for s in self.streams)

    def is_test_stream(self, stream: StreamSpec) -> bool:
        """The generated stream of the in-cluster test source: its URL is fixed, in-cluster and credential-free,
        so it is the one source the charts spell out."""
        return self.has_test_stream and stream.name == self.rtsp_test_source.stream_name

    # ---- construction from `cdk deploy --outputs-file` -------------------------------------

    @classmethod
    def from_outputs_file(cls, path: str | Path, settings: dict[str, Any] | None = None, **overrides: Any) -> "PlatformWiring":
        """Build the wiring from a `cdk deploy --outputs-file` JSON plus non-output settings.

        settings: the parsed settings file (see load_settings); overrides: any field, last word.
        Raises WiringError naming a missing output key or the invalid setting.
        """
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise WiringError(f"outputs file {path} does not exist (write it with `cdk deploy --outputs-file {path}`)") from None
        except json.JSONDecodeError as exc:
            raise WiringError(f"outputs file {path} is not JSON: {exc}") from None
        outputs = merge_stack_outputs(document, path)
        missing = [key for key in OutputKeys.REQUIRED if not outputs.get(key)]
        if missing:
            raise WiringError(
                f"outputs file {path} lacks output key(s) {', '.join(missing)}"
                f" (found: {', '.join(sorted(outputs)) or 'none'}); see cdk8s_app/wiring.py OutputKeys"
            )
        fields: dict[str, Any] = dict(settings or {})
        fields.update(
            region=outputs[OutputKeys.REGION],
            kafka_bootstrap=outputs[OutputKeys.KAFKA_BOOTSTRAP],
            archive_uri=outputs[OutputKeys.ARCHIVE_URI],
            model_uri=outputs[OutputKeys.MODEL_URI],
            images={
                "publisher": outputs[OutputKeys.PUBLISHER_IMAGE],
                "consumer": outputs[OutputKeys.CONSUMER_IMAGE],
                "inference": outputs[OutputKeys.INFERENCE_IMAGE],
            },
        )
        if outputs.get(OutputKeys.NAMESPACE):
            fields["namespace"] = outputs[OutputKeys.NAMESPACE]
        accounts = {
            role: outputs[key]
            for role, key in (
                ("publisher", OutputKeys.PUBLISHER_SERVICE_ACCOUNT),
                ("consumer", OutputKeys.CONSUMER_SERVICE_ACCOUNT),
                ("inference", OutputKeys.INFERENCE_SERVICE_ACCOUNT),
            )
            if outputs.get(key)
        }
        if accounts:
            fields["service_accounts"] = {**fields.get("service_accounts", {}), **accounts}
        if outputs.get(OutputKeys.KEDA_SCALER_ROLE_ARN):
            fields["keda"] = {"role_arn": outputs[OutputKeys.KEDA_SCALER_ROLE_ARN]}
        fields.update(overrides)
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise WiringError(f"invalid wiring from {path}:\n  {_describe(exc)}") from None


def merge_stack_outputs(document: Any, path: Path | str = "outputs file") -> dict[str, str]:
    """Flatten {"Stack": {"Key": "value"}} into {"Key": "value"}; a key with two values is an error."""
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise WiringError(f"{path}: expected {{\"StackName\": {{\"OutputKey\": \"value\"}}}} as written by cdk deploy --outputs-file")
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for stack, outputs in document.items():
        for key, value in outputs.items():
            if key in merged and merged[key] != value:
                raise WiringError(f"{path}: output key {key} differs between stacks {origin[key]} and {stack}")
            merged[key], origin[key] = str(value), stack
    return merged


def load_settings(path: str | Path) -> dict[str, Any]:
    """The non-output settings file (YAML mapping of PlatformWiring fields); {} when it is empty."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise WiringError(f"settings file {path} does not exist") from None
    if not isinstance(data, dict):
        raise WiringError(f"settings file {path} must hold a mapping of wiring fields")
    provided_by_outputs = {"region", "kafka_bootstrap", "archive_uri", "model_uri", "images"}
    clash = sorted(provided_by_outputs & set(data))
    if clash:
        raise WiringError(f"settings file {path} sets {', '.join(clash)}, which come from the outputs file")
    return data


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "wiring"
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "\n  ".join(lines)
