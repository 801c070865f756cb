"""The base of every service's deploy unit as the charts see it: a `ServiceUnit` (identity, grants, ports,
pool: vidpipe_deploy.units) that renders its own Kubernetes objects with the charts' building blocks
(pods.py, workloads.py, network.py, autoscaling.py).

A service's room, services/<folder>/deploy.py, subclasses `Room` and defines `UNIT`; the registry
(vidpipe_deploy.registry) loads it and the charts (charts.py) call its hooks in order.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from constructs import Construct

from cdk8s_app.autoscaling import Autoscaling
from cdk8s_app.pods import ContainerSpec, HealthProbes, deployment, disruption_budget, prometheus_annotations
from cdk8s_app.workloads import ASSET_IMAGE_ANNOTATIONS, api_token_volume, unit_labels
from vidpipe_deploy.units import ServiceUnit
from vidpipe_deploy.wiring import PlatformWiring


class Room(ServiceUnit):
    """Hooks the charts call for each deployed service. Every service has a workload and a network policy;
    scaling (the analytics service runs a fixed number of replicas) and run-once Jobs are optional."""

    # A room without these two cannot be made (its deploy.py fails to load, naming the class).
    @abstractmethod
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Its ConfigMap(s), Deployment(s), Service and PodDisruptionBudget."""

    @abstractmethod
    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        """What its pods may reach and be reached from, on top of the namespace's default deny."""

    def add_scaling(self, scope: Autoscaling, wiring: PlatformWiring) -> None:
        """KEDA objects, where the service scales on its own."""

    def add_jobs(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Run-once Jobs (its `jobs`, each under its own ServiceAccount) and what only they use, in the jobs chart."""

    # --- what every room's workload shares --------------------------------------------------------

    def container(self, wiring: PlatformWiring, *, startup_seconds: int, **spec: Any) -> ContainerSpec:
        """Its image's container: its own image, its health probes on its ops (or only) port, and the API token
        as a file where it checks or sends it and the token is a Kubernetes Secret (api_token_settings)."""
        token = api_token_volume(wiring) if self.api_token_variable else None
        if token is not None:
            spec["mounts"] = [*spec.get("mounts", []), token[1]]
        return ContainerSpec(
            name=self.component,
            image=wiring.image(self.role),
            probes=HealthProbes(port=self.health_port, startup_seconds=startup_seconds),
            **spec,
        )

    def deploy(
        self,
        scope: Construct,
        wiring: PlatformWiring,
        container: ContainerSpec,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        service_account: str | None = None,
        pod_annotations: dict[str, str] | None = None,
        budget: bool = True,
        **options: Any,
    ) -> None:
        """A hardened Deployment of the container under the unit's identity, on its node pool, scraped on its
        health port, with a PodDisruptionBudget unless budget=False (a single-replica Recreate workload)."""
        name, labels = name or self.name, labels or unit_labels(self)
        token = api_token_volume(wiring) if self.api_token_variable else None
        if token is not None:
            options["volumes"] = [*options.get("volumes", []), token[0]]
        deployment(
            scope,
            name,
            labels,
            [container],
            service_account=service_account or wiring.service_account(self.role),
            automount_token=wiring.automount_service_account_token,
            node_selector=wiring.node_selectors.pool(self.pool),
            pod_annotations={**(pod_annotations or {}), **prometheus_annotations(self.health_port)},
            annotations=ASSET_IMAGE_ANNOTATIONS,
            **options,
        )
        if budget:
            disruption_budget(scope, name, labels)


def rooms(units: tuple[ServiceUnit, ...]) -> list[Room]:
    """The units as rooms, or a clear refusal naming the one that cannot render itself."""
    refused = [unit.name for unit in units if not isinstance(unit, Room)]
    if refused:
        raise TypeError(f"{', '.join(refused)}: a deployed service's unit must be a cdk8s_app.rooms.Room")
    return [unit for unit in units if isinstance(unit, Room)]
