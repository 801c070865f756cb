"""NetworkPolicies: deny everything in the namespace, then open exactly what each service needs.

- all pods: DNS to kube-dns only.
- inference: ingress on its API port from the consumer only; egress HTTPS to S3 (the model), to the VPC's
  interface endpoints (Secrets Manager: the API token) and the Pod Identity agent.
- consumer: egress to the inference API port, Kafka, HTTPS to S3 (archive) and the VPC's endpoints (token),
  and the Pod Identity agent.
- analytics: egress to Kafka, HTTPS to S3 (archived frames) and the VPC's endpoints (token), and the Pod
  Identity agent; no ingress on its API port (its live view is reached with `kubectl port-forward`, which
  the kubelet delivers inside the pod, past NetworkPolicy, like the probes).
- publishers: egress to Kafka, their stream source's port, and the Pod Identity agent; HTTPS to the VPC's
  endpoints when the source URL is read from AWS Secrets Manager (source_secret_arn). No S3.
- test source: ingress 8554 from publishers; HTTPS egress only when it loops a remote video.
- metrics_namespace: ingress from that namespace to each service's ops (health) port only, never an API port.

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

from cdk8s_plus_36 import k8s
from constructs import Construct

from vidpipe_deploy.units import ServiceUnit

from .pods import app_labels, port, selector_labels
from .wiring import PlatformWiring, StreamSpec
from .workloads import RTSP_PORT, TEST_SOURCE_LABELS, publisher_labels, publisher_name, unit_labels

ANYWHERE = "0.0.0.0/0"
# EKS Pod Identity agent (a host-network DaemonSet) serves credentials on these link-local addresses.
POD_IDENTITY_AGENT = ("169.254.170.23/32", "fd00:ec2::23/128")
HTTPS = 443
# EC2 instance metadata (IPv4; the IPv6 address fd00:ec2::254 is outside every block below).
INSTANCE_METADATA = "169.254.169.254/32"


def _tcp(*numbers: int) -> list[k8s.NetworkPolicyPort]:
    return [k8s.NetworkPolicyPort(port=port(n), protocol="TCP") for n in numbers]


def _pods(labels: dict[str, str]) -> k8s.NetworkPolicyPeer:
    return k8s.NetworkPolicyPeer(pod_selector=k8s.LabelSelector(match_labels=selector_labels(labels)))


def _cidr(cidr: str) -> k8s.NetworkPolicyPeer:
    """An ipBlock peer; a block that contains the instance metadata address excepts it.

    The API server accepts `except` only inside the block, so a block without the address (the VPC
    CIDR, the Pod Identity agent) has none; a CDK token (the VPC CIDR before deployment) is a VPC range,
    which AWS never allocates from 169.254.0.0/16.
    """
    return k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr=cidr, except_=_metadata_excluded(cidr)))


def _metadata_excluded(cidr: str) -> list[str] | None:
    try:
        block = ipaddress.ip_network(cidr, strict=False)
    except ValueError:  # an unresolved token
        return None
    metadata = ipaddress.ip_network(INSTANCE_METADATA)
    if block.version == metadata.version and metadata.subnet_of(block) and block != metadata:  # type: ignore[arg-type]
        return [INSTANCE_METADATA]
    return None


class NetworkPolicies(Construct):
    def __init__(self, scope: Construct, id: str, wiring: PlatformWiring) -> None:
        super().__init__(scope, id)
        self.wiring = wiring
        self._policy("default-deny", {}, ingress=[], egress=[])
        self._policy(
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
                    ports=[k8s.NetworkPolicyPort(port=port(53), protocol="UDP"), *_tcp(53)],
                )
            ],
        )
        self._inference()
        self._consumer()
        self._analytics()
        self._publishers()
        if wiring.rtsp_test_source.enabled:
            self._test_source()
        if wiring.metrics_namespace:
            self._metrics(wiring.metrics_namespace)

    # Each policy adds allowances; the default-deny policy above makes everything else refused.
    def _policy(
        self, name: str, pod_labels: dict[str, str], ingress: list | None = None, egress: list | None = None
    ) -> None:
        types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
        k8s.KubeNetworkPolicy(
            self,
            f"{name}-netpol",
            metadata=k8s.ObjectMeta(name=name, labels=app_labels("vidpipe", "network-policy")),
            spec=k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels=selector_labels(pod_labels) or None),
                policy_types=types,
                ingress=ingress or None,
                egress=egress or None,
            ),
        )

    def _https(self, *, s3: bool = False, aws_apis: bool = False) -> list[k8s.NetworkPolicyEgressRule]:
        """443 to S3 (s3_cidrs, else any address) and/or the VPC's interface endpoints (the VPC CIDR)."""
        cidrs: list[str] = []
        if s3:
            cidrs += self.wiring.s3_cidrs or [ANYWHERE]
        if aws_apis:
            cidrs.append(self.wiring.vpc_cidr or ANYWHERE)
        if not cidrs:
            return []
        return [k8s.NetworkPolicyEgressRule(to=[_cidr(c) for c in dict.fromkeys(cidrs)], ports=_tcp(HTTPS))]

    def _token(self, unit: ServiceUnit) -> bool:
        """The unit reads the API token from Secrets Manager."""
        return self.wiring.api_token_secret_arn is not None and unit.api_token_variable is not None

    def _kafka(self) -> k8s.NetworkPolicyEgressRule:
        return k8s.NetworkPolicyEgressRule(
            to=[_cidr(self.wiring.vpc_cidr or ANYWHERE)], ports=_tcp(*self.wiring.kafka_ports)
        )

    @staticmethod
    def _pod_identity() -> k8s.NetworkPolicyEgressRule:
        return k8s.NetworkPolicyEgressRule(to=[_cidr(c) for c in POD_IDENTITY_AGENT], ports=_tcp(80))

    def _inference(self) -> None:
        inference, consumer = self.wiring.services.inference, self.wiring.services.consumer
        self._policy(
            inference.name,
            unit_labels(inference),
            ingress=[k8s.NetworkPolicyIngressRule(from_=[_pods(unit_labels(consumer))], ports=_tcp(inference.port))],
            egress=[*self._https(s3=True, aws_apis=self._token(inference)), self._pod_identity()],
        )

    def _consumer(self) -> None:
        inference, consumer = self.wiring.services.inference, self.wiring.services.consumer
        self._policy(
            consumer.name,
            unit_labels(consumer),
            egress=[
                k8s.NetworkPolicyEgressRule(to=[_pods(unit_labels(inference))], ports=_tcp(inference.port)),
                self._kafka(),
                *self._https(s3=True, aws_apis=self._token(consumer)),
                self._pod_identity(),
            ],
        )

    def _analytics(self) -> None:
        analytics = self.wiring.services.analytics
        self._policy(
            analytics.name,
            unit_labels(analytics),
            egress=[self._kafka(), *self._https(s3=True, aws_apis=self._token(analytics)), self._pod_identity()],
        )

    def _publishers(self) -> None:
        for stream in self.wiring.all_streams:
            self._policy(
                publisher_name(stream),
                publisher_labels(self.wiring, stream),
                egress=[
                    self._kafka(),
                    self._pod_identity(),
                    *self._source(stream),
                    *self._https(aws_apis=stream.source_secret_arn is not None),  # Secrets Manager
                ],
            )

    def _source(self, stream: StreamSpec) -> list[k8s.NetworkPolicyEgressRule]:
        """Egress to the camera: the in-cluster test source by pod label, anything else by its port."""
        if self.wiring.is_test_stream(stream):
            return [k8s.NetworkPolicyEgressRule(to=[_pods(TEST_SOURCE_LABELS)], ports=_tcp(RTSP_PORT))]
        return [k8s.NetworkPolicyEgressRule(to=[_cidr(ANYWHERE)], ports=_tcp(stream.port))]

    def _test_source(self) -> None:
        publishers = k8s.NetworkPolicyPeer(
            pod_selector=k8s.LabelSelector(match_labels={"app.kubernetes.io/name": self.wiring.services.publisher.name})
        )
        # A remote test video is anywhere on the internet.
        egress = (
            [k8s.NetworkPolicyEgressRule(to=[_cidr(ANYWHERE)], ports=_tcp(HTTPS))]
            if self.wiring.rtsp_test_source.video_url
            else []
        )
        self._policy(
            "rtsp-test-source",
            TEST_SOURCE_LABELS,
            ingress=[k8s.NetworkPolicyIngressRule(from_=[publishers], ports=_tcp(RTSP_PORT))],
            egress=egress or None,
        )

    def _metrics(self, namespace: str) -> None:
        """One policy per service, on its own pods and its ops port alone: a port number another service uses
        for its API (the publishers' health port is the analytics API port) is never opened by accident."""
        scraper = k8s.NetworkPolicyPeer(
            namespace_selector=k8s.LabelSelector(match_labels={"kubernetes.io/metadata.name": namespace})
        )
        for unit in self.wiring.services.all():
            self._policy(
                f"{unit.name}-metrics",
                unit_labels(unit),
                ingress=[k8s.NetworkPolicyIngressRule(from_=[scraper], ports=_tcp(unit.health_port))],
            )
