"""The Kubernetes side, embedded: cdk8s charts (cdk8s_app/) built from CDK tokens and applied by the cluster.

The charts never create the namespace or the ServiceAccounts (this app does, with Pod Identity);
the autoscaling chart (KEDA ScaledObjects) waits for the KEDA Helm release and its CRDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cdk8s
from aws_cdk import Aws
from aws_cdk import aws_eks_v2 as eks
from constructs import IDependable
from pydantic import ValidationError

from vidpipe_deploy.facts import StreamSpec
from vidpipe_deploy.units import Services

from .config import CONTEXT_PREFIX, ConfigError, PlatformConfig

if TYPE_CHECKING:
    from vidpipe_deploy.wiring import PlatformWiring


@dataclass(frozen=True)
class WorkloadInputs:
    """The deploy-time values (CDK tokens) the charts need."""

    kafka_bootstrap: str
    archive_uri: str
    model_uri: str
    images: dict[str, str]  # unit role (publisher, consumer, inference, analytics) -> image URI
    vpc_cidr: str
    services: Services  # names (and so ServiceAccounts), ports, pools
    # Streams whose URL is in Secrets Manager have their own ServiceAccount (read on exactly that secret).
    stream_service_accounts: dict[str, str] = field(default_factory=dict)
    api_token_secret_arn: str | None = None
    model_sha256: str | None = None  # the uploaded model file's digest: the inference pods load nothing else
    gate_cache_uri: str | None = None  # s3:// prefix of the inference pods' start-up gate verdicts


def stream_wiring(stream: StreamSpec, service_account: str | None) -> StreamSpec:
    """The same stream model on both sides; the CDK app adds the ServiceAccount it created for it."""
    return StreamSpec.model_validate(
        {
            **stream.model_dump(exclude={"service_account"}, exclude_none=True),
            **({"service_account": service_account} if service_account else {}),
        }
    )


def build_wiring(config: PlatformConfig, inputs: WorkloadInputs) -> PlatformWiring:
    from vidpipe_deploy.wiring import PlatformWiring

    fields: dict[str, Any] = dict(
        region=Aws.REGION,
        namespace=config.namespace,
        create_namespace=False,
        kafka_bootstrap=inputs.kafka_bootstrap,
        kafka_auth="msk-iam",
        kafka_tls=True,
        vpc_cidr=inputs.vpc_cidr,
        topics=config.topics,
        archive_uri=inputs.archive_uri,
        model_uri=inputs.model_uri,
        images=inputs.images,
        services=inputs.services,
        # No URL here: each publisher reads it from Secrets Manager or from its Kubernetes Secret.
        streams=[stream_wiring(s, inputs.stream_service_accounts.get(s.name)) for s in config.streams],
        rtsp_test_source=config.rtsp_test_source,
        analytics=config.analytics,
        scaling={"analytics_replicas": config.analytics_replicas},
        dead_letters=config.dead_letters,
        metrics_namespace=config.metrics_namespace,
        # The managed scraper reaches the pods from ENIs in the private subnets (constructs/observability.py).
        metrics_scraper_cidr=inputs.vpc_cidr if config.observability else None,
        api_token_secret_arn=inputs.api_token_secret_arn,
        model_sha256=inputs.model_sha256,
        gate_cache_uri=inputs.gate_cache_uri,
        # The inference pod and the KEDA thresholds are sized for this node type (vidpipe_deploy/sizing.py).
        inference_node_type=config.inference_node_type,
        # With an S3 interface endpoint S3 resolves to addresses in the VPC; else NetworkPolicy cannot name it.
        s3_cidrs=[inputs.vpc_cidr] if config.s3_interface_endpoint else None,
    )
    try:
        return PlatformWiring.model_validate(fields)
    except ValidationError as exc:
        problems = "\n  ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'wiring'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(
            f"the Kubernetes wiring rejects the configuration (see {CONTEXT_PREFIX}streams, "
            f"{CONTEXT_PREFIX}rtspTestSource, {CONTEXT_PREFIX}topics, {CONTEXT_PREFIX}analytics):\n  {problems}"
        ) from None


def add_workloads(
    cluster: eks.Cluster,
    wiring: PlatformWiring,
    *,
    workloads_after: Sequence[IDependable],
    autoscaling_after: Sequence[IDependable],
) -> list[eks.KubernetesManifest]:
    """One KubernetesManifest per chart, in order: workloads, then autoscaling (needs KEDA's CRDs)."""
    from cdk8s_app.charts import build_platform_charts

    charts = build_platform_charts(cdk8s.App(), wiring)
    manifests: list[eks.KubernetesManifest] = []
    for chart in charts.all():
        manifest = cluster.add_cdk8s_chart(chart.node.id, chart)
        after = autoscaling_after if chart is charts.autoscaling else workloads_after
        for dependency in (*after, *manifests):
            manifest.node.add_dependency(dependency)
        manifests.append(manifest)
    return manifests
