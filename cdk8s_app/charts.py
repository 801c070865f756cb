"""The public entry point: build the platform's charts from a PlatformWiring.

Both paths use it:
- CDK: `charts = build_platform_charts(cdk8s.App(), wiring)`, then `cluster.add_cdk8s_chart(...)` for
  each chart in `charts.all()` (the autoscaling chart after the KEDA Helm chart: it needs the CRDs; the jobs
  chart after the workloads).
- standalone: cdk8s_app/main.py, then `app.synth()` writes dist/<chart>.k8s.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

import cdk8s
from cdk8s_plus_36 import k8s

from vidpipe_deploy.wiring import PlatformWiring

from . import KUBERNETES_VERSION
from .autoscaling import Autoscaling
from .network import NetworkPolicies
from .pods import PART_OF, app_labels
from .rooms import rooms
from .workloads import Jobs, Workloads

CHART_LABELS = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": "cdk8s"}


@dataclass(frozen=True)
class PlatformCharts:
    """namespace: None when the CDK stack creates the namespace (wiring.create_namespace False)."""

    namespace: cdk8s.Chart | None
    workloads: cdk8s.Chart
    autoscaling: cdk8s.Chart
    jobs: cdk8s.Chart

    def all(self) -> list[cdk8s.Chart]:
        return [c for c in (self.namespace, self.workloads, self.autoscaling, self.jobs) if c is not None]


def build_platform_charts(app: cdk8s.App, wiring: PlatformWiring) -> PlatformCharts:
    """Namespace (optional), workloads (Deployments, ConfigMaps, Service, PDBs, NetworkPolicies),
    autoscaling (KEDA TriggerAuthentication + ScaledObjects), jobs (the run-once Jobs: the registry seed).
    ServiceAccounts are never created here."""
    namespace = None
    if wiring.create_namespace:
        # Its own chart without a namespace: a Namespace object is cluster-scoped.
        namespace = cdk8s.Chart(app, "vidpipe-namespace", labels=CHART_LABELS)
        k8s.KubeNamespace(
            namespace,
            "namespace",
            metadata=k8s.ObjectMeta(
                name=wiring.namespace,
                labels={
                    **app_labels("vidpipe", "namespace"),
                    # Pods here already meet the restricted profile: make the API server enforce it.
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": f"v{KUBERNETES_VERSION}",
                },
            ),
        )
    # Each service renders its own objects (its room, services/<folder>/deploy.py), in deployment order.
    units = rooms(wiring.services.all())
    workloads = cdk8s.Chart(app, "vidpipe-workloads", namespace=wiring.namespace, labels=CHART_LABELS)
    Workloads(workloads, "services", wiring, units)
    NetworkPolicies(workloads, "network", wiring, units)
    autoscaling = cdk8s.Chart(app, "vidpipe-autoscaling", namespace=wiring.namespace, labels=CHART_LABELS)
    Autoscaling(autoscaling, "keda", wiring, units)
    jobs = cdk8s.Chart(app, "vidpipe-jobs", namespace=wiring.namespace, labels=CHART_LABELS)
    Jobs(jobs, "jobs", wiring, units)
    if namespace is not None:
        workloads.add_dependency(namespace)
    autoscaling.add_dependency(workloads)
    jobs.add_dependency(workloads)
    return PlatformCharts(namespace=namespace, workloads=workloads, autoscaling=autoscaling, jobs=jobs)
