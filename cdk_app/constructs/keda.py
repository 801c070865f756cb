"""KEDA as one add-on (the pattern of cdk-eks-blueprints' KedaAddOn): its namespace, the operator's
ServiceAccount and Pod Identity (describe-only Kafka grants, vidpipe_deploy.units.KedaUnit), and the Helm
chart running the operator as that ServiceAccount. The trigger defaults the charts use (identityOwner
keda) come from the same unit.

A plain class, not a Construct: it adds its resources where they always were (the cluster's manifests
and Helm chart, the stack's identity), so their logical ids do not move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aws_cdk import aws_eks_v2 as eks
from constructs import IDependable

from vidpipe_deploy.units import KEDA, KedaUnit

from ..units import GrantTargets, deploy_identity
from .service_identity import ServiceIdentity


class KedaAddOn:
    def __init__(self, chart_version: str, unit: KedaUnit = KEDA) -> None:
        self.unit = unit
        self.chart_version = chart_version

    def deploy(
        self,
        cluster: eks.Cluster,
        targets: GrantTargets,
        namespace: Callable[[str, str], eks.KubernetesManifest],
        *,
        chart_after: Sequence[IDependable] = (),
    ) -> KedaAddOn:
        """namespace(name, enforce): the stack's Namespace manifest factory (one label set for all)."""
        unit = self.unit
        self.namespace = namespace(unit.namespace, unit.pod_security)
        self.identity: ServiceIdentity = deploy_identity(
            targets,
            cluster,
            name=unit.service_account,
            namespace=unit.namespace,
            grants=unit.grants,
            nag_reason=unit.nag_reason,
            after=[self.namespace],
        )
        self.chart = cluster.add_helm_chart(
            "Keda",
            chart=unit.chart,
            repository=unit.repository,
            version=self.chart_version,
            release=unit.release,
            namespace=unit.namespace,
            create_namespace=False,
            # The operator runs as our ServiceAccount, which carries the Pod Identity association.
            values={"serviceAccount": {"operator": {"create": False, "name": unit.service_account}}},
            wait=True,
        )
        self.chart.node.add_dependency(self.identity)
        for dependency in chart_after:
            self.chart.node.add_dependency(dependency)  # `wait` needs nodes to schedule the operator on
        return self
