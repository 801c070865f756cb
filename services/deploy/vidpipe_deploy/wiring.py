"""The typed wiring between the AWS infrastructure and the Kubernetes workloads.

One `PlatformWiring` feeds the same chart code on two paths:

- CDK path: the CDK compute stack builds it from CDK tokens (bucket names, broker list, image URIs,
  unresolved at synth time, e.g. "${Token[TOKEN.123]}") and adds the charts to the cluster with
  `cluster.add_cdk8s_chart`. Validators therefore accept token strings and check only literal values.
- Standalone path: `PlatformWiring.from_outputs_file(path)` reads what `cdk deploy --outputs-file`
  wrote ({"StackName": {"OutputKey": "value"}}) and `cdk8s synth` writes plain manifests.

Settings that are not stack outputs (the registry seed, RTSP test source, scaling knobs) come from
cdk8s_app/settings.yaml on the standalone path (`load_settings`) and from the CDK app's own
configuration on the CDK path.

This module never imports aws_cdk: it must load in a plain cdk8s process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from vidpipe.kafka import normalize_bootstrap
from vidpipe.stream_registry import StreamDefinition
from vidpipe_deploy import sizing
from vidpipe_deploy.facts import (  # noqa: F401  (re-exported: the wiring's public names)
    CAMERA_SECRET,
    CAMERA_SOURCES_DIR,
    IAM_ROLE_ARN,
    IMAGE,
    K8S_NAME,
    K8S_SECRET_NAME,
    MSK_IAM_PORT,
    NODE_POOL_LABEL,
    NODE_POOLS,
    TEST_SOURCE_STREAM,
    TOKEN,
    DeadLetters,
    FrozenModel,
    OutputKeys,
    Topics,
    check,
    check_ipv4_cidr,
    check_region,
    check_secret_arn,
    is_token,
    parse_seed,
    secrets_manager_sources,
)
from vidpipe_deploy.figures import FiguresError
from vidpipe_deploy.units import KEDA, Services, identity_outputs


class WiringError(ValueError):
    """The wiring cannot be built; the message names the output key or setting at fault."""


def registered_services() -> Services:
    """The services of this tree (vidpipe_deploy.registry), loaded when first asked for: their rooms render
    with the charts' building blocks, which read this module."""
    from .registry import registered

    return registered()


def required_output_keys(services: Services | None = None) -> tuple[str, ...]:
    """The outputs the standalone path cannot do without (the per-service ServiceAccounts are optional)."""
    services = services or registered_services()
    return (
        OutputKeys.REGION,
        OutputKeys.KAFKA_BOOTSTRAP,
        OutputKeys.ARCHIVE_URI,
        OutputKeys.MODEL_URI,
        *(unit.image_output for unit in services.all()),
    )


def _image(value: str) -> str:
    return check(IMAGE, value, "an image reference (registry/repository:tag or @sha256:digest)")


# Container image URIs (ECR URIs or tokens) by service role.
Images = dict[str, Annotated[str, AfterValidator(_image)]]
# ServiceAccount names by service role, where they differ from the services' names; the CDK stack creates them
# (EKS Pod Identity), the charts only reference them.
ServiceAccounts = dict[str, Annotated[str, Field(pattern=K8S_NAME)]]


class KedaAuth(FrozenModel):
    """How KEDA's Kafka scaler signs MSK IAM tokens: exactly one of role_arn / identity_owner.

    identity_owner "keda" uses the KEDA operator's own Pod Identity (the CDK app associates a role
    with the keda-operator ServiceAccount); role_arn makes the operator assume that role.
    """

    role_arn: str | None = Field(default=None, alias="roleArn")
    identity_owner: Literal["keda", "workload"] | None = Field(default=KEDA.identity_owner, alias="identityOwner")

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        return check(IAM_ROLE_ARN, value, "an IAM role ARN") if value else None

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
    def _exactly_one(self) -> KedaAuth:
        if (self.role_arn is None) == (self.identity_owner is None):
            raise ValueError("set exactly one of role_arn and identity_owner (KEDA treats them as mutually exclusive)")
        return self


class RtspTestSource(FrozenModel):
    """An in-cluster RTSP server looping a test video, so a fresh deployment has a live stream.

    Pulls public images (mediamtx from Docker Hub); off by default. Without video_url, ffmpeg renders
    its built-in test pattern; with it, ffmpeg loops that video (HTTPS egress is opened for it).
    """

    enabled: bool = False
    image: str = "docker.io/bluenviron/mediamtx:1.12.3-ffmpeg"
    video_url: str | None = Field(default=None, alias="videoUrl")
    path: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")] = "test"
    fps: int = Field(default=15, ge=1, le=60)
    stream_name: Annotated[str, Field(pattern=K8S_NAME)] = Field(default=TEST_SOURCE_STREAM, alias="streamName")
    target_fps: float = Field(default=5.0, gt=0.0, le=60.0, alias="targetFps", description="its seeded stream's")

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


class Resources(FrozenModel):
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


# The inference pod on the default node type: the defaults below; PlatformWiring sizes for its own node type.
_DEFAULT_POD = sizing.for_node(sizing.DEFAULT_NODE_TYPE)


class Scaling(FrozenModel):
    """Replica bounds and the throughput the KEDA lag thresholds derive from.

    lagThreshold = throughput per replica (frames/s) x latency budget (s): the backlog one replica
    clears within the budget, never at or below the consumer's in-flight depth. Unless set, the throughput
    is the committed figures' for the inference node type (vidpipe_deploy/sizing.py, figures.json; see
    PlatformWiring.inference_node_type and docs/KEDA_KAFKA_LAG.md).
    """

    pipeline_fps_per_replica: float = Field(
        default=_DEFAULT_POD.pipeline_fps, gt=0, description="one consumer with the inference behind it, end to end"
    )
    inference_fps_per_replica: float = Field(default=_DEFAULT_POD.inference_fps, gt=0, description="one inference pod")
    latency_budget_s: float = Field(default=2.0, gt=0, le=60)

    consumer_min_replicas: int = Field(
        default=1, ge=1, description=">= 1: a group that never committed can stay at zero"
    )
    consumer_max_replicas: int | None = Field(default=None, ge=1, description="default: the partition count")
    inference_min_replicas: int = Field(default=1, ge=1)
    inference_max_replicas: int | None = Field(default=None, ge=1, description="default: the partition count")
    # Not autoscaled: each replica is a member of the analytics group, so the partition count bounds its
    # parallelism, and every rebalance resets the moved streams' trackers.
    analytics_replicas: int = Field(default=1, ge=1, description="at most the partition count")
    # One publisher Deployment carries every camera: KEDA keeps ceil(enabled streams / streams_per_pod) pods,
    # read from the analytics service's /streams/count. Measured (docs/STREAMS.md, "Capacity"): 0.026 CPU-s/s
    # per 640x272 stream and 0.070 per 720p stream at 5 frames/s; 8 streams per process with every frame
    # delivered on 2 vCPUs. 25 small streams are about 0.65 CPU, 25 720p streams about 1.75 (resources.publisher).
    publisher_streams_per_pod: int = Field(default=25, ge=1, le=1000, description="the ScaledObject's targetValue")
    publisher_min_replicas: int = Field(default=2, ge=1, description="one pod lost never stops every camera")
    publisher_max_replicas: int | None = Field(
        default=None, ge=1, description="default: the registry's partitions (pods beyond them carry nothing)"
    )
    polling_interval_s: int = Field(default=15, ge=5, le=300)
    scale_down_stabilization_s: int = Field(default=300, ge=0, le=3600)

    @property
    def consumer_lag_threshold(self) -> int:
        return sizing.lag_threshold(self.pipeline_fps_per_replica, self.latency_budget_s)

    @property
    def inference_lag_threshold(self) -> int:
        return sizing.lag_threshold(self.inference_fps_per_replica, self.latency_budget_s)


class WorkloadResources(FrozenModel):
    # A publisher pod carries up to scaling.publisher_streams_per_pod streams (25: about 0.65 CPU at 640x272, 1.75 at
    # 720p, 5 frames/s each): the request covers small streams, the limit 720p ones. Memory: a decoder and a few
    # frames in flight per stream.
    publisher: Resources = Resources(cpu_request="750m", cpu_limit="2", memory_request="512Mi", memory_limit="2Gi")
    consumer: Resources = Resources(
        cpu_request="500m", cpu_limit=str(sizing.CONSUMER_CPU_LIMIT), memory_request="512Mi", memory_limit="1Gi"
    )
    # One pod per inference node, sized from the committed figures for the node type (sizing.py); PlatformWiring
    # sizes for its own node type unless these are set.
    inference: Resources = Resources(**_DEFAULT_POD.resources)
    # Instances x threads per serving process (one process per CPU of the limit): 1 x 1 (sizing.py).
    inference_instances: int = Field(default=_DEFAULT_POD.instances, ge=1, le=256)
    inference_threads: int = Field(default=_DEFAULT_POD.threads_per_instance, ge=1, le=64)
    # Trackers per stream, the live view's frames and the plotting libraries' imports.
    analytics: Resources = Resources(cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="1Gi")


class NodeSelectors(FrozenModel):
    """Node labels per pool; the defaults match the CDK app's managed node groups (facts.NODE_POOL_LABEL)."""

    inference: dict[str, str] = Field(default_factory=lambda: {NODE_POOL_LABEL: "inference"})
    general: dict[str, str] = Field(default_factory=lambda: {NODE_POOL_LABEL: "general"})

    def pool(self, name: str) -> dict[str, str]:
        selector: dict[str, str] = getattr(self, name)
        return selector


class PlatformWiring(FrozenModel):
    """Everything the charts need; build it from CDK tokens or from an outputs file."""

    region: str
    namespace: Annotated[str, Field(pattern=K8S_NAME)] = "vidpipe"
    create_namespace: bool = Field(default=True, description="off on the CDK path: the stack creates it")
    kafka_bootstrap: str
    kafka_auth: Literal["msk-iam", "none"] = "msk-iam"
    kafka_tls: bool = True
    kafka_port: int = Field(
        default=MSK_IAM_PORT, ge=1, le=65535, description="egress port when the broker list is a token"
    )
    vpc_cidr: str | None = Field(default=None, description="limits Kafka egress to the VPC; default any address")
    # Also accepted flat, as settings files write them: consumer_group, topic_partitions.
    topics: Topics = Topics()
    topics_create: bool = Field(default=True, description="services create missing topics at start-up")
    archive_uri: str
    model_uri: str
    images: Images
    # Where `images` are CDK tokens (unknown until deploy): a literal per image that changes whenever the image
    # does (the CDK app's asset hashes), for what is named after a hash of its pod (the registry seed's Job).
    image_revisions: dict[str, str] = Field(default_factory=dict)
    services: Services = Field(
        default_factory=registered_services,
        exclude=True,  # units are code (their rooms), not settings: never dumped, never read from a file
        description="the deployed services (vidpipe_deploy/registry.py)",
    )
    service_accounts: ServiceAccounts = Field(default_factory=dict)
    keda: KedaAuth = KedaAuth()
    # The registry seed: stream definitions in the registry's format (id, source by reference: secret:<key> of
    # the camera Secret, a Secrets Manager ARN or a URL without credentials; target_fps, lines, zones...),
    # validated by the registry's own code. The seed Job applies them without pruning (streams added at runtime
    # stay).
    streams: list[StreamDefinition] = Field(default_factory=list)
    rtsp_test_source: RtspTestSource = RtspTestSource()
    # The publishers' egress to cameras: these TCP ports at any address outside the cluster (RTSP over TCP).
    camera_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=lambda: [554, 8554], min_length=1)
    # Secrets Manager secrets holding camera URLs besides those the seed names (a stream added at runtime with an
    # ARN source): the publishers' identity may read these (the CDK app grants it), and HTTPS to the VPC's
    # endpoints is opened for them.
    camera_secret_arns: list[str] = Field(default_factory=list)
    # The KEDA operator's namespace: it polls the analytics service's ops port for the publishers' scaling rule.
    keda_namespace: Annotated[str, Field(pattern=K8S_NAME)] = KEDA.namespace
    # The inference pool's EC2 instance type: the inference pod and the KEDA thresholds are sized from the
    # committed figures of its CPU class (sizing.py) unless `scaling` and `resources` set them.
    inference_node_type: str = Field(default=sizing.DEFAULT_NODE_TYPE, description="e.g. c7i.xlarge")
    scaling: Scaling = Scaling()
    resources: WorkloadResources = WorkloadResources()
    node_selectors: NodeSelectors = NodeSelectors()
    # No workload calls the Kubernetes API. The EKS Pod Identity webhook mounts its own token volume,
    # so the API token stays off; turn this on only if credentials fail on a given EKS version.
    automount_service_account_token: bool = False
    consumer_max_frame_age_ms: int = Field(default=0, ge=0, description="skip frames older than this (live streams)")
    metrics_namespace: Annotated[str, Field(pattern=K8S_NAME)] | None = Field(
        default=None, description="namespace of a Prometheus allowed to scrape /metrics (on the ops ports only)"
    )
    # A scraper outside the cluster (Amazon Managed Service for Prometheus reaches the pods from network
    # interfaces in the VPC): this CIDR may reach each service's ops port, never an API port.
    metrics_scraper_cidr: str | None = Field(
        default=None, description="where an out-of-cluster scraper reaches the ops ports from (the VPC CIDR)"
    )
    dead_letters: DeadLetters = DeadLetters()
    # The API token (one Secrets Manager secret): inference and analytics require it as a bearer token, the
    # consumer sends it. None: no authentication (the services warn at start-up).
    api_token_secret_arn: str | None = Field(default=None, description="Secrets Manager ARN of the API token")
    # Without Secrets Manager: a Kubernetes Secret you create (key `token`), mounted as a file into the services
    # that check or send the token and into the registry seed Job (<stem>_FILE, --token-file).
    api_token_secret_name: Annotated[str, Field(pattern=K8S_SECRET_NAME, max_length=253)] | None = Field(
        default=None, description="Kubernetes Secret holding the API token (key token), when there is no ARN"
    )
    # INFERENCE_MODEL_SHA256: the inference pods refuse a model file with another digest. The CDK app pins the
    # file it uploaded; None: no pin.
    model_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="sha256 of the model file at model_uri"
    )
    # INFERENCE_GATE_CACHE_URI: where the inference pods keep their start-up accuracy gate's verdicts (an s3://
    # prefix beside the model, which the CDK app sets and lets the inference identity read and write). None:
    # each pod keeps them under its own /tmp and a new pod runs the gate again.
    gate_cache_uri: str | None = Field(default=None, description="s3:// prefix of the start-up gate's verdicts")
    # NetworkPolicy takes CIDRs, not the S3 prefix list: by default HTTPS to S3 is open to any address but the
    # instance metadata one. Give the region's S3 ranges (or the VPC CIDR with an S3 interface endpoint) to
    # narrow it.
    s3_cidrs: list[str] | None = Field(default=None, description="where pods reach S3 over HTTPS; default any")

    @model_validator(mode="before")
    @classmethod
    def _sized_for_the_node_type(cls, data: Any) -> Any:
        """The inference pod and the throughput figures for the inference node type, where not set."""
        if not isinstance(data, dict):
            return data
        node_type = data.get("inference_node_type") or sizing.DEFAULT_NODE_TYPE
        try:
            pod = sizing.for_node(node_type)
        except FiguresError as exc:
            raise ValueError(f"inference_node_type: {exc}") from None
        data = dict(data)
        scaling = _given(data.get("scaling"))
        scaling.setdefault("pipeline_fps_per_replica", pod.pipeline_fps)
        scaling.setdefault("inference_fps_per_replica", pod.inference_fps)
        resources = _given(data.get("resources"))
        resources.setdefault("inference", pod.resources)
        resources.setdefault("inference_instances", pod.instances)
        resources.setdefault("inference_threads", pod.threads_per_instance)
        data["scaling"], data["resources"] = scaling, resources
        return data

    @model_validator(mode="before")
    @classmethod
    def _lines_and_zones_live_in_the_streams(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("analytics"):
            raise ValueError(
                "analytics: lines and zones are part of each stream's definition now: move analytics.<id>.lines "
                "and .zones into the entry of `streams` with that id"
            )
        if isinstance(data, dict) and "analytics" in data:
            data = {k: v for k, v in data.items() if k != "analytics"}
        return data

    @field_validator("streams", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> list[StreamDefinition]:
        # The registry's own validation; a refusal names the key (streams[lobby].zones[0].polygon).
        return parse_seed(value)

    @field_validator("camera_secret_arns")
    @classmethod
    def _camera_secret_arns(cls, value: list[str]) -> list[str]:
        return [check_secret_arn(arn) for arn in value]

    @model_validator(mode="before")
    @classmethod
    def _flat_topic_settings(cls, data: Any) -> Any:
        if isinstance(data, dict) and ({"consumer_group", "topic_partitions"} & set(data)):
            data = dict(data)
            topics = data.get("topics") or {}
            topics = dict(topics.model_dump() if isinstance(topics, Topics) else topics)
            if "consumer_group" in data:
                topics["consumer_group"] = data.pop("consumer_group")
            if "topic_partitions" in data:
                topics["partitions"] = data.pop("topic_partitions")
            data["topics"] = topics
        return data

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region(value)

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
        if TOKEN.fullmatch(value):
            return value
        raise ValueError(f"{value!r} is not an s3://bucket/key URI")

    @field_validator("gate_cache_uri")
    @classmethod
    def _gate_cache_uri(cls, value: str | None) -> str | None:
        if value and not (value.startswith(("s3://", "/")) or TOKEN.fullmatch(value)):
            raise ValueError(f"{value!r} is neither an s3:// prefix nor an absolute path")
        return value or None

    @field_validator("vpc_cidr", "metrics_scraper_cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value and not is_token(value):
            check_ipv4_cidr(value, exact=False)
        return value or None

    @field_validator("s3_cidrs")
    @classmethod
    def _s3_cidrs(cls, value: list[str] | None) -> list[str] | None:
        for cidr in value or []:
            if not is_token(cidr):
                check_ipv4_cidr(cidr)
        return value or None

    @field_validator("api_token_secret_arn")
    @classmethod
    def _token_arn(cls, value: str | None) -> str | None:
        return check_secret_arn(value) if value else None

    @model_validator(mode="after")
    def _consistent(self) -> PlatformWiring:
        roles = [unit.role for unit in self.services.all()]
        missing = [role for role in roles if role not in self.images]
        if missing or set(self.images) - set(roles):
            raise ValueError(
                f"images: one per deployed service ({roles}); missing {missing}, unknown "
                f"{sorted(set(self.images) - set(roles))}"
            )
        unknown = sorted(set(self.service_accounts) - set(roles))
        if unknown:
            raise ValueError(f"service_accounts: no deployed service has the role(s) {unknown} (roles: {roles})")
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
        if self.scaling.analytics_replicas > self.topic_partitions:
            raise ValueError(
                f"scaling.analytics_replicas ({self.scaling.analytics_replicas}) exceeds topic_partitions"
                f" ({self.topic_partitions}): members of the analytics group beyond the partition count sit idle"
            )
        if self.publisher_max_replicas > self.topics.streams_partitions:
            raise ValueError(
                f"scaling.publisher_max_replicas ({self.publisher_max_replicas}) exceeds the registry's partitions"
                f" ({self.topics.streams_partitions}): publishers beyond them carry no stream"
            )
        if self.publisher_max_replicas < self.scaling.publisher_min_replicas:
            raise ValueError("scaling.publisher_max_replicas is below scaling.publisher_min_replicas")
        return self

    # ---- derived values -------------------------------------------------------------------

    @property
    def inference_sizing(self) -> sizing.PodSizing:
        """The committed figures' inference pod for the inference node type (what the defaults came from)."""
        return sizing.for_node(self.inference_node_type)

    @property
    def consumer_group(self) -> str:
        return self.topics.consumer_group

    @property
    def topic_partitions(self) -> int:
        return self.topics.partitions

    def service_account(self, role: str) -> str:
        """The ServiceAccount of a service: an override (outputs file, settings) or the service's name."""
        return self.service_accounts.get(role) or self.services.role(role).name

    def image(self, role: str) -> str:
        return self.images[role]

    def image_revision(self, role: str) -> str:
        """A literal that changes whenever the role's image does: its revision, else its reference."""
        return self.image_revisions.get(role) or self.images[role]

    @property
    def consumer_max_replicas(self) -> int:
        return self.scaling.consumer_max_replicas or self.topic_partitions

    @property
    def inference_max_replicas(self) -> int:
        return self.scaling.inference_max_replicas or self.topic_partitions

    @property
    def publisher_max_replicas(self) -> int:
        return self.scaling.publisher_max_replicas or self.topics.streams_partitions

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
    def seed(self) -> list[StreamDefinition]:
        """The registry seed the charts apply: the configured streams, plus the in-cluster test source's stream
        when it is on (its fixed URL is in-cluster and credential-free) and no configured stream has its id."""
        streams = list(self.streams)
        test = self.rtsp_test_source
        if test.enabled and not any(s.id == test.stream_name for s in streams):
            streams.append(
                StreamDefinition(id=test.stream_name, source=self.test_source_url, target_fps=test.target_fps)
            )
        return streams

    @property
    def camera_secrets_manager_arns(self) -> list[str]:
        """The Secrets Manager secrets the publishers may read: those the seed names, and camera_secret_arns."""
        return sorted({*secrets_manager_sources(self.streams), *self.camera_secret_arns})

    @property
    def api_token_file_secret(self) -> str | None:
        """The Kubernetes Secret the API token is read from as a file: only without a Secrets Manager ARN."""
        return None if self.api_token_secret_arn else self.api_token_secret_name

    # ---- construction from `cdk deploy --outputs-file` -------------------------------------

    @classmethod
    def from_outputs_file(
        cls,
        path: str | Path,
        settings: dict[str, Any] | None = None,
        services: Services | None = None,
        **overrides: Any,
    ) -> PlatformWiring:
        """Build the wiring from a `cdk deploy --outputs-file` JSON plus non-output settings.

        settings: the parsed settings file (see load_settings); services: the units the CDK app was
        built with (their output keys); overrides: any field, last word.
        Raises WiringError naming a missing output key or the invalid setting.
        """
        path = Path(path)
        services = services or registered_services()
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise WiringError(
                f"outputs file {path} does not exist (write it with `cdk deploy --outputs-file {path}`)"
            ) from None
        except json.JSONDecodeError as exc:
            raise WiringError(f"outputs file {path} is not JSON: {exc}") from None
        outputs = merge_stack_outputs(document, path)
        missing = [key for key in required_output_keys(services) if not outputs.get(key)]
        if missing:
            raise WiringError(
                f"outputs file {path} lacks output key(s) {', '.join(missing)}"
                f" (found: {', '.join(sorted(outputs)) or 'none'}); see vidpipe_deploy/facts.py OutputKeys and units.py"
            )
        fields: dict[str, Any] = dict(settings or {})
        fields.update(
            services=services,
            region=outputs[OutputKeys.REGION],
            kafka_bootstrap=outputs[OutputKeys.KAFKA_BOOTSTRAP],
            archive_uri=outputs[OutputKeys.ARCHIVE_URI],
            model_uri=outputs[OutputKeys.MODEL_URI],
            images={unit.role: outputs[unit.image_output] for unit in services.all()},
        )
        if outputs.get(OutputKeys.NAMESPACE):
            fields["namespace"] = outputs[OutputKeys.NAMESPACE]
        if outputs.get(KEDA.NAMESPACE_OUTPUT):
            fields.setdefault("keda_namespace", outputs[KEDA.NAMESPACE_OUTPUT])
        # Optional outputs (older deployments lack them); a value in the settings file wins.
        optional = (
            (OutputKeys.VPC_CIDR, "vpc_cidr"),
            (OutputKeys.API_TOKEN_SECRET_ARN, "api_token_secret_arn"),
            (OutputKeys.MODEL_SHA256, "model_sha256"),
        )
        for key, name in optional:
            if outputs.get(key):
                fields.setdefault(name, outputs[key])
        accounts = {
            unit.role: outputs[key] for unit in services.all() if outputs.get(key := identity_outputs(unit.name)[0])
        }
        if accounts:
            fields["service_accounts"] = {**fields.get("service_accounts", {}), **accounts}
        fields.update(overrides)
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise WiringError(f"invalid wiring from {path}:\n  {_describe(exc)}") from None


def _given(section: Any) -> dict[str, Any]:
    """A settings section as the fields it sets: a model's explicitly set fields, or a mapping."""
    if isinstance(section, FrozenModel):
        return section.model_dump(exclude_unset=True)
    return dict(section or {})


def merge_stack_outputs(document: Any, path: Path | str = "outputs file") -> dict[str, str]:
    """Flatten {"Stack": {"Key": "value"}} into {"Key": "value"}; a key with two values is an error."""
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise WiringError(
            f'{path}: expected {{"StackName": {{"OutputKey": "value"}}}} as written by cdk deploy --outputs-file'
        )
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
        message = error["msg"].removeprefix("Value error, ")
        # The seed's problems name their own keys (streams[lobby].zones[0].polygon).
        lines.append(message if message.startswith(f"{where}[") else f"{where}: {message}")
    return "\n  ".join(lines)
