"""The Kubernetes side, embedded: cdk8s charts (cdk8s_app/) built from CDK tokens and applied by the cluster.

The charts never create the namespace or the ServiceAccounts (this app does, with Pod Identity);
the autoscaling chart (KEDA ScaledObjects) waits for the KEDA Helm release and its CRDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cdk8s
from aws_cdk import Aws
from aws_cdk import aws_eks_v2 as eks
from constructs import IDependable
from pydantic import ValidationError

from vidpipe_deploy.units import KEDA, Services

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
    api_token_secret_arn: str | None = None
    image_revisions: dict[str, str] | None = None  # role -> the image asset's hash (a literal; the URIs are tokens)
    model_sha256: str | None = None  # the uploaded model file's digest: the inference pods load nothing else
    gate_cache_uri: str | None = None  # s3:// prefix of the inference pods' start-up gate verdicts


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
        image_revisions=inputs.image_revisions or {},
        services=inputs.services,
        # The registry seed: sources by reference (the camera Secret's keys, Secrets Manager ARNs), never a URL
        # with credentials.
        streams=config.streams,
        rtsp_test_source=config.rtsp_test_source,
        camera_ports=config.camera_ports,
        camera_secret_arns=config.camera_secret_arns,
        keda_namespace=KEDA.namespace,
        scaling={
            "analytics_replicas": config.analytics_replicas,
            "publisher_streams_per_pod": config.publisher_streams_per_pod,
        },
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
            f"{CONTEXT_PREFIX}rtspTestSource, {CONTEXT_PREFIX}topics, {CONTEXT_PREFIX}cameraPorts):\n  {problems}"
        ) from None


def add_workloads(
    cluster: eks.Cluster,
    wiring: PlatformWiring,
    *,
    workloads_after: Sequence[IDependable],
    autoscaling_after: Sequence[IDependable],
) -> list[eks.KubernetesManifest]:
    """One KubernetesManifest per chart, in order: workloads, then autoscaling (needs KEDA's CRDs), then the
    run-once Jobs (after the workloads they talk to; their own manifest, so applied again only when they change)."""
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
