"""A start for a new service's deploy unit: copy this file to services/<folder>/deploy.py, add the folder to
vidpipe_deploy/registry.py's FOLDERS, and say what the service needs.

As written it deploys one replica of the folder's image with an HTTP API on `port` (a ClusterIP Service named
after the folder), probes and /metrics on the same port, the Kafka client settings, egress to Kafka and the Pod
Identity agent, and read access to the results topic. The folder's name is the service's name and role.
"""

from __future__ import annotations

from constructs import Construct

from cdk8s_app.network import kafka, network_policy, pod_identity
from cdk8s_app.pods import (
    ContainerSpec,
    HealthProbes,
    cluster_ip_service,
    config_map,
    deployment,
    disruption_budget,
    prometheus_annotations,
)
from cdk8s_app.rooms import Room
from cdk8s_app.workloads import ASSET_IMAGE_ANNOTATIONS, KAFKA_CONFIG, unit_labels
from vidpipe_deploy.facts import GENERAL_POOL
from vidpipe_deploy.units import CONNECT, KAFKA_WHY, KafkaGrant
from vidpipe_deploy.wiring import PlatformWiring, Resources

RESOURCES = Resources(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="256Mi")


class Service(Room):
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        labels = unit_labels(self)
        # Its own settings, beside the Kafka client's (vidpipe-kafka); the names are the service's to choose.
        config_map(scope, self.name, {"PORT": str(self.port), "KAFKA_CLIENT_ID": self.name}, labels)
        deployment(
            scope,
            self.name,
            labels,
            [
                ContainerSpec(
                    name=self.component,
                    image=wiring.image(self.role),
                    resources=RESOURCES,
                    config_maps=[KAFKA_CONFIG, self.name],
                    ports={"http": self.port},
                    probes=HealthProbes(port=self.health_port),
                )
            ],
            service_account=wiring.service_account(self.role),
            automount_token=wiring.automount_service_account_token,
            tmp_size="64Mi",
            grace_seconds=30,
            node_selector=wiring.node_selectors.pool(self.pool),
            pod_annotations=prometheus_annotations(self.health_port),
            annotations=ASSET_IMAGE_ANNOTATIONS,
        )
        cluster_ip_service(scope, f"{self.name}-svc", self.name, labels, "http", self.port)
        disruption_budget(scope, self.name, labels)

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        network_policy(scope, self.name, unit_labels(self), egress=[kafka(wiring), pod_identity()])


UNIT = Service(
    component="service",
    port=8000,
    pool=GENERAL_POOL,
    grants=(
        CONNECT,
        KafkaGrant(
            sid="DescribeResults",
            actions=("kafka-cluster:DescribeTopic",),
            on="topics",
            topics=("results",),
        ),
    ),
    nag_reason=KAFKA_WHY,
)
