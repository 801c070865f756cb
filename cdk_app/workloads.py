"""The Kubernetes side, embedded: cdk8s charts (cdk8s_app/) built from CDK tokens and applied by the cluster.

The charts never create the namespace or the ServiceAccounts (this app does, with Pod Identity);
the autoscaling chart (KEDA ScaledObjects) waits for the KEDA Helm release and its CRDs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import cdk8s
from aws_cdk import Aws
from aws_cdk import aws_eks_v2 as eks
from constructs import IDependable
from pydantic import ValidationError

from .config import CONTEXT_PREFIX, ConfigError, PlatformConfig, StreamConfig

if TYPE_CHECKING:
    from cdk8s_app.wiring import PlatformWiring


@dataclass(frozen=True)
class WorkloadInputs:
    """The deploy-time values (CDK tokens) the charts need."""

    kafka_bootstrap: str
    archive_uri: str
    model_uri: str
    publisher_image: str
    consumer_image: str
    inference_image: str
    vpc_cidr: str
    service_accounts: dict[str, str]  # publisher / consumer / inference -> ServiceAccount name
    # Streams whose URL is in Secrets Manager have their own ServiceAccount (read on exactly that secret).
    stream_service_accounts: dict[str, str] = field(default_factory=dict)


def stream_wiring(stream: StreamConfig, service_account: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": stream.id, "target_fps": stream.target_fps, "port": stream.port}
    for key in ("source_secret_arn", "secret_name", "secret_key"):
        if getattr(stream, key) is not None:
            fields[key] = getattr(stream, key)
    if service_account:
        fields["service_account"] = service_account
    return fields


def build_wiring(config: PlatformConfig, inputs: WorkloadInputs) -> "PlatformWiring":
    from cdk8s_app.wiring import PlatformWiring

    t = config.topics
    fields: dict[str, Any] = dict(
        region=Aws.REGION,
        namespace=config.namespace,
        create_namespace=False,
        kafka_bootstrap=inputs.kafka_bootstrap,
        kafka_auth="msk-iam",
        kafka_tls=True,
        vpc_cidr=inputs.vpc_cidr,
        topics={"frames": t.frames, "results": t.results, "deadLetter": t.dead_letter},
        consumer_group=t.consumer_group,
        topic_partitions=t.partitions,
        archive_uri=inputs.archive_uri,
        model_uri=inputs.model_uri,
        images={"publisher": inputs.publisher_image, "consumer": inputs.consumer_image, "inference": inputs.inference_image},
        service_accounts=inputs.service_accounts,
        # No URL here: each publisher reads it from Secrets Manager or from its Kubernetes Secret.
        streams=[stream_wiring(s, inputs.stream_service_accounts.get(s.id)) for s in config.streams],
        rtsp_test_source=config.rtsp_test_source,
    )
    try:
        return PlatformWiring.model_validate(fields)
    except ValidationError as exc:
        problems = "\n  ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'wiring'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise ConfigError(
            f"the Kubernetes wiring rejects the configuration (see {CONTEXT_PREFIX}streams, "
            f"{CONTEXT_PREFIX}rtspTestSource, {CONTEXT_PREFIX}topics):\n  {problems}"
        ) from None


def add_workloads(
    cluster: eks.Cluster,
    wiring: "PlatformWiring",
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
