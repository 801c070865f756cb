"""The base of every service's deploy unit as the charts see it: a `ServiceUnit` (identity, grants, ports,
pool: vidpipe_deploy.units) that renders its own Kubernetes objects with the charts' building blocks
(pods.py, workloads.py, network.py, autoscaling.py).

A service's room, services/<folder>/deploy.py, subclasses `Room` and defines `UNIT`; the registry
(vidpipe_deploy.registry) loads it and the charts (charts.py) call its hooks in order.
"""

from __future__ import annotations

from constructs import Construct

from cdk8s_app.autoscaling import Autoscaling
from vidpipe_deploy.units import ServiceUnit
from vidpipe_deploy.wiring import PlatformWiring


class Room(ServiceUnit):
    """Hooks the charts call for each deployed service. Every service has a workload and a network policy;
    scaling is optional (the analytics service and the publishers run a fixed number of replicas)."""

    # The ClusterIP Service in front of its API, when other pods call it (the consumer calls `inference`).
    service_name: str | None = None

    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Its ConfigMap(s), Deployment(s), Service and PodDisruptionBudget."""
        raise NotImplementedError(f"{self.name}: its room renders no workload")

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        """What its pods may reach and be reached from, on top of the namespace's default deny."""
        raise NotImplementedError(f"{self.name}: its room declares no network policy")

    def add_scaling(self, scope: Autoscaling, wiring: PlatformWiring) -> None:
        """KEDA objects, where the service scales on its own."""


def rooms(units: tuple[ServiceUnit, ...]) -> list[Room]:
    """The units as rooms, or a clear refusal naming the one that cannot render itself."""
    refused = [unit.name for unit in units if not isinstance(unit, Room)]
    if refused:
        raise TypeError(f"{', '.join(refused)}: a deployed service's unit must be a cdk8s_app.rooms.Room")
    return [unit for unit in units if isinstance(unit, Room)]
