"""NetworkPolicies: deny everything in the namespace, then open exactly what each service needs.

This module holds the platform-wide policies (default deny, DNS, the test source, the metrics scraper) and
the building blocks each service's room uses for its own policy (services/<folder>/deploy.py):

- all pods: DNS to kube-dns only.
- each service: what its room opens (its ingress from named peers, Kafka, HTTPS, the Pod Identity agent).
- test source: ingress 8554 from the publishers; HTTPS egress only when it loops a remote video.
- metrics_namespace: ingress from that namespace to each service's ops (health) port only, never an API port.
- metrics_scraper_cidr: the same, from addresses in that block (a managed scraper's network interfaces in
  the VPC, which no namespace selector can name).

HTTPS goes to two kinds of destination. AWS APIs with an interface endpoint (Secrets Manager, STS) have
addresses in the VPC: 443 to the VPC CIDR. S3 is reached through the gateway endpoint at S3's public
addresses (a prefix list, which NetworkPolicy cannot name): 443 to `s3_cidrs` when given (the region's S3
ranges, or the VPC CIDR with an S3 interface endpoint), else to any address but instance metadata, and only
for the three pods that use S3. Without a VPC CIDR in the wiring both fall back to any address.

Every ipBlock that contains the EC2 instance metadata address excepts it: no rule lets a pod ask IMDS
for the node role's credentials (the nodes also answer IMDSv2 only, hop limit 1: cdk_app compute stack).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Protocol

from cdk8s_plus_36 import k8s
from constructs import Construct

from vidpipe_deploy.units import ServiceUnit
from vidpipe_deploy.wiring import PlatformWiring

from .pods import app_labels, port, selector_labels
from .workloads import RTSP_PORT, TEST_SOURCE_LABELS, unit_labels

ANYWHERE = "0.0.0.0/0"
# EKS Pod Identity agent (a host-network DaemonSet) serves credentials on these link-local addresses.
POD_IDENTITY_AGENT = ("169.254.170.23/32", "fd00:ec2::23/128")
HTTPS = 443
# EC2 instance metadata (IPv4; the IPv6 address fd00:ec2::254 is outside every block below).
INSTANCE_METADATA = "169.254.169.254/32"


def tcp(*numbers: int) -> list[k8s.NetworkPolicyPort]:
    return [k8s.NetworkPolicyPort(port=port(n), protocol="TCP") for n in numbers]


def pods(labels: dict[str, str]) -> k8s.NetworkPolicyPeer:
    return k8s.NetworkPolicyPeer(pod_selector=k8s.LabelSelector(match_labels=selector_labels(labels)))


def namespace(name: str) -> k8s.NetworkPolicyPeer:
    """Every pod of another namespace (by its immutable kubernetes.io/metadata.name label)."""
    return k8s.NetworkPolicyPeer(
        namespace_selector=k8s.LabelSelector(match_labels={"kubernetes.io/metadata.name": name})
    )


def cidr(block: str) -> k8s.NetworkPolicyPeer:
    """An ipBlock peer; a block that contains the instance metadata address excepts it.

    The API server accepts `except` only inside the block, so a block without the address (the VPC
    CIDR, the Pod Identity agent) has none; a CDK token (the VPC CIDR before deployment) is a VPC range,
    which AWS never allocates from 169.254.0.0/16.
    """
    return k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr=block, except_=_metadata_excluded(block)))


def _metadata_excluded(cidr: str) -> list[str] | None:
    try:
        block = ipaddress.ip_network(cidr, strict=False)
    except ValueError:  # an unresolved token
        return None
    metadata = ipaddress.ip_network(INSTANCE_METADATA)
    if block.version == metadata.version and metadata.subnet_of(block) and block != metadata:  # type: ignore[arg-type]
        return [INSTANCE_METADATA]
    return None


def network_policy(
    scope: Construct, name: str, pod_labels: dict[str, str], ingress: list | None = None, egress: list | None = None
) -> k8s.KubeNetworkPolicy:
    """One policy's allowances; the default-deny policy makes everything else refused."""
    types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
    return k8s.KubeNetworkPolicy(
        scope,
        f"{name}-netpol",
        metadata=k8s.ObjectMeta(name=name, labels=app_labels("vidpipe", "network-policy")),
        spec=k8s.NetworkPolicySpec(
            pod_selector=k8s.LabelSelector(match_labels=selector_labels(pod_labels) or None),
            policy_types=types,
            ingress=ingress or None,
            egress=egress or None,
        ),
    )


def https(wiring: PlatformWiring, *, s3: bool = False, aws_apis: bool = False) -> list[k8s.NetworkPolicyEgressRule]:
    """443 to S3 (s3_cidrs, else any address) and/or the VPC's interface endpoints (the VPC CIDR)."""
    cidrs: list[str] = []
    if s3:
        cidrs += wiring.s3_cidrs or [ANYWHERE]
    if aws_apis:
        cidrs.append(wiring.vpc_cidr or ANYWHERE)
    if not cidrs:
        return []
    return [k8s.NetworkPolicyEgressRule(to=[cidr(c) for c in dict.fromkeys(cidrs)], ports=tcp(HTTPS))]


def reads_token(wiring: PlatformWiring, unit: ServiceUnit) -> bool:
    """The unit reads the API token from Secrets Manager (HTTPS to the VPC's endpoints)."""
    return wiring.api_token_secret_arn is not None and unit.api_token_variable is not None


def kafka(wiring: PlatformWiring) -> k8s.NetworkPolicyEgressRule:
    return k8s.NetworkPolicyEgressRule(to=[cidr(wiring.vpc_cidr or ANYWHERE)], ports=tcp(*wiring.kafka_ports))


def pod_identity() -> k8s.NetworkPolicyEgressRule:
    return k8s.NetworkPolicyEgressRule(to=[cidr(c) for c in POD_IDENTITY_AGENT], ports=tcp(80))


def to_unit(unit: ServiceUnit) -> k8s.NetworkPolicyEgressRule:
    """Egress to another service's API port."""
    return k8s.NetworkPolicyEgressRule(to=[pods(unit_labels(unit))], ports=tcp(unit.port))


def from_units(unit: ServiceUnit, *clients: ServiceUnit) -> k8s.NetworkPolicyIngressRule:
    """Ingress on the unit's API port from these services only."""
    return k8s.NetworkPolicyIngressRule(from_=[pods(unit_labels(c)) for c in clients], ports=tcp(unit.port))


class HasNetworkPolicy(Protocol):
    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None: ...


class NetworkPolicies(Construct):
    """The platform-wide policies, and each service's own from its room."""

    def __init__(
        self, scope: Construct, id: str, wiring: PlatformWiring, rooms: Sequence[HasNetworkPolicy] = ()
    ) -> None:
        super().__init__(scope, id)
        self.wiring = wiring
        network_policy(self, "default-deny", {}, ingress=[], egress=[])
        network_policy(
            self,
            "allow-dns",
            {},
            egress=[
                k8s.NetworkPolicyEgressRule(
                    to=[
                        k8s.NetworkPolicyPeer(
                            namespace_selector=k8s.LabelSelector(
                                match_labels={"kubernetes.io/metadata.name": "kube-system"}
                            ),
                            pod_selector=k8s.LabelSelector(match_labels={"k8s-app": "kube-dns"}),
                        )
                    ],
                    ports=[k8s.NetworkPolicyPort(port=port(53), protocol="UDP"), *tcp(53)],
                )
            ],
        )
        for room in rooms:
            room.add_network_policy(self, wiring)
        if wiring.rtsp_test_source.enabled:
            self._test_source()
        if wiring.metrics_namespace:
            self._metrics(wiring.metrics_namespace)
        if wiring.metrics_scraper_cidr:
            self._metrics_from_cidr(wiring.metrics_scraper_cidr)

    def _test_source(self) -> None:
        publishers = k8s.NetworkPolicyPeer(
            pod_selector=k8s.LabelSelector(match_labels={"app.kubernetes.io/name": self.wiring.services.publisher.name})
        )
        # A remote test video is anywhere on the internet.
        egress = (
            [k8s.NetworkPolicyEgressRule(to=[cidr(ANYWHERE)], ports=tcp(HTTPS))]
            if self.wiring.rtsp_test_source.video_url
            else []
        )
        network_policy(
            self,
            "rtsp-test-source",
            TEST_SOURCE_LABELS,
            ingress=[k8s.NetworkPolicyIngressRule(from_=[publishers], ports=tcp(RTSP_PORT))],
            egress=egress or None,
        )

    def _metrics(self, name: str) -> None:
        """One policy per service, on its own pods and its ops port alone: a port number another service uses
        for its API (the publishers' health port is the analytics API port) is never opened by accident."""
        scraper = namespace(name)
        for unit in self.wiring.services.all():
            network_policy(
                self,
                f"{unit.name}-metrics",
                unit_labels(unit),
                ingress=[k8s.NetworkPolicyIngressRule(from_=[scraper], ports=tcp(unit.health_port))],
            )

    def _metrics_from_cidr(self, block: str) -> None:
        """As _metrics, for a scraper that reaches the pods from outside the cluster (its own policy per service,
        the ops port alone)."""
        for unit in self.wiring.services.all():
            network_policy(
                self,
                f"{unit.name}-metrics-scraper",
                unit_labels(unit),
                ingress=[k8s.NetworkPolicyIngressRule(from_=[cidr(block)], ports=tcp(unit.health_port))],
            )
