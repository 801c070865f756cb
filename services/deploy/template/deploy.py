"""A start for a new service's deploy unit: copy this file to services/<folder>/deploy.py, add the folder to
vidpipe_deploy/registry.py's FOLDERS, and say what the service needs.

As written it deploys one replica of the folder's image with an HTTP API on `port` (a ClusterIP Service named
after the folder), probes and /metrics on the same port, the Kafka client settings, egress to Kafka and the Pod
Identity agent, and read access to the results topic (a consumer group of its own needs a grant too). The folder's name is the service's name and role.
"""

from __future__ import annotations

from constructs import Construct

from cdk8s_app.network import kafka, network_policy, pod_identity
from cdk8s_app.pods import cluster_ip_service, config_map
from cdk8s_app.rooms import Room
from cdk8s_app.workloads import KAFKA_CONFIG, unit_labels
from vidpipe_deploy.facts import GENERAL_POOL
from vidpipe_deploy.units import CONNECT, KAFKA_WHY, reads
from vidpipe_deploy.wiring import PlatformWiring, Resources

RESOURCES = Resources(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="256Mi")


class Service(Room):
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        labels = unit_labels(self)
        # Its own settings, beside the Kafka client's (vidpipe-kafka); the names are the service's to choose.
        config_map(scope, self.name, {"PORT": str(self.port), "KAFKA_CLIENT_ID": self.name}, labels)
        container = self.container(
            wiring,
            startup_seconds=60,
            resources=RESOURCES,
            config_maps=[KAFKA_CONFIG, self.name],
            ports={"http": self.port},
        )
        self.deploy(scope, wiring, container, tmp_size="64Mi", grace_seconds=30)
        cluster_ip_service(scope, f"{self.api_service}-svc", self.api_service, labels, "http", self.port)

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        network_policy(scope, self.name, unit_labels(self), egress=[kafka(wiring), pod_identity()])


UNIT = Service(
    component="service",
    port=8000,
    pool=GENERAL_POOL,
    grants=(
        CONNECT,
        reads("ReadResults", "results"),
    ),
    nag_reason=KAFKA_WHY,
)
