"""NetworkPolicies: default deny; only the consumer reaches inference; egress limited to what is needed."""

from __future__ import annotations

import ipaddress

import pytest

pytestmark = pytest.mark.infra

AGENT = {"169.254.170.23/32", "fd00:ec2::23/128"}


def policies_selecting(manifests, labels: dict[str, str]) -> list[dict]:
    """Policies whose podSelector matches a pod with these labels."""
    return [
        p
        for p in manifests.kind("NetworkPolicy")
        if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
    ]


def pod_labels(manifests, deployment: str) -> dict[str, str]:
    return manifests.get("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def test_default_deny_for_every_pod(manifests):
    deny = manifests.get("NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def ingress_rules(manifests, deployment: str) -> list[dict]:
    return [
        r
        for p in policies_selecting(manifests, pod_labels(manifests, deployment))
        for r in p["spec"].get("ingress", [])
    ]


def from_pods(rules: list[dict]) -> list[dict]:
    """Ingress rules from pods of this namespace (not from another namespace: Prometheus)."""
    return [r for r in rules if any("namespaceSelector" not in peer for peer in r["from"])]


def test_only_the_consumer_reaches_inference_on_8080(manifests):
    consumer = pod_labels(manifests, "consumer-service")
    rules = from_pods(ingress_rules(manifests, "inference-service"))
    assert len(rules) == 1
    (rule,) = rules
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"].items() <= consumer.items()
    # ...and the consumer's egress allows exactly that.
    egress = [r for p in policies_selecting(manifests, consumer) for r in p["spec"].get("egress", [])]
    assert any(r["ports"] == [{"port": 8080, "protocol": "TCP"}] and "podSelector" in r["to"][0] for r in egress)


def test_no_other_workload_accepts_ingress_from_pods(manifests):
    # The analytics live view: `kubectl port-forward` reaches it inside the pod, past NetworkPolicy.
    for name in ["consumer-service", "frame-publisher"]:
        assert not from_pods(ingress_rules(manifests, name)), name
    # The analytics API: from the registry seed Job's pods only, on the API port.
    (rule,) = from_pods(ingress_rules(manifests, "analytics-service"))
    (job,) = manifests.kind("Job")
    assert rule == {
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "stream-registry-seed"}}}],
        "ports": [{"port": 8082, "protocol": "TCP"}],
    }
    assert (
        rule["from"][0]["podSelector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_monitoring_namespace_reaches_only_the_ops_ports(manifests, wiring):
    """Prometheus's namespace may scrape each service's ops (health) port and nothing else: not the inference
    API (8080), not the analytics live view (8082, the same number as the publishers' health port)."""
    assert wiring.metrics_namespace == "monitoring"
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    expected = {"inference-service": 8090, "analytics-service": 8092, "consumer-service": 8081, "frame-publisher": 8082}
    keda = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    for name, port in expected.items():
        scraped = [
            r
            for r in ingress_rules(manifests, name)
            if r not in from_pods(ingress_rules(manifests, name)) and r["from"] != [keda]
        ]
        assert scraped == [{"from": [monitoring], "ports": [{"port": port, "protocol": "TCP"}]}], name
        probe_ports = {
            c[kind]["httpGet"]["port"]
            for c in manifests.get("Deployment", name)["spec"]["template"]["spec"]["containers"]
            for kind in ("readinessProbe", "livenessProbe")
            if kind in c and "httpGet" in c[kind]
        }
        assert probe_ports == {port}, name
    # No policy selects every pod with an ingress rule (one would open a port on pods it was not meant for).
    assert all(p["spec"]["podSelector"] for p in manifests.kind("NetworkPolicy") if p["spec"].get("ingress"))


def test_without_a_metrics_namespace_nothing_is_scraped(wiring):
    from tests.k8s.k8s_helpers import synthesize

    manifests = synthesize(wiring.model_copy(update={"metrics_namespace": None}))
    for policy in manifests.kind("NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            # KEDA's namespace reads the analytics ops port for the publishers' scaling rule, nothing else.
            others = [peer for peer in rule["from"] if "namespaceSelector" in peer]
            assert all(p["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"} for p in others)
            assert not others or (policy["metadata"]["name"], rule["ports"]) == (
                "analytics-service",
                [{"port": 8092, "protocol": "TCP"}],
            )


def egress_ports(manifests, deployment: str) -> dict[int, list[dict]]:
    return egress_ports_of(manifests, pod_labels(manifests, deployment))


def egress_ports_of(manifests, labels: dict[str, str]) -> dict[int, list[dict]]:
    ports: dict[int, list[dict]] = {}
    for policy in policies_selecting(manifests, labels):
        for rule in policy["spec"].get("egress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: egress without a port restriction"
            for p in rule["ports"]:
                ports.setdefault(p["port"], []).extend(rule["to"])
    return ports


def test_egress_is_limited_per_service(manifests, wiring):
    allowed = {
        "inference-service": {53, 443, 80},
        "consumer-service": {53, 8080, 9098, 443, 80},
        "analytics-service": {53, 9098, 443, 80},  # Kafka, archived frames from S3, credentials
    }
    for name, expected in allowed.items():
        assert set(egress_ports(manifests, name)) == expected, name
    # The publishers: Kafka, the cameras' ports anywhere outside the cluster (the test source's by its pods),
    # credentials.
    ports = egress_ports(manifests, "frame-publisher")
    assert set(ports) == {53, 9098, 80, *wiring.camera_ports} == {53, 9098, 80, 554, 8554}
    anywhere = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}
    assert ports[554] == [anywhere]
    test_source = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "rtsp-test-source"}}}
    assert sorted(map(str, ports[8554])) == sorted(map(str, [anywhere, test_source]))
    # The registry seed Job: the analytics API, Secrets Manager (the token), credentials.
    (job,) = manifests.kind("Job")
    seed = egress_ports_of(manifests, job["spec"]["template"]["metadata"]["labels"])
    assert set(seed) == {53, 8082, 443, 80}
    assert seed[8082] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "analytics-service"}}}]
    assert seed[443] == [{"ipBlock": {"cidr": "10.40.0.0/16"}}]
    for name in ["inference-service", "consumer-service", "analytics-service"]:
        # Port 80 is only for the EKS Pod Identity agent (credentials), not the internet.
        assert {peer["ipBlock"]["cidr"] for peer in egress_ports(manifests, name)[80]} == AGENT
        dns_peers = egress_ports(manifests, name)[53]
        assert all(peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"} for peer in dns_peers)


def https_destinations(manifests, deployment: str) -> set[str]:
    return {peer["ipBlock"]["cidr"] for peer in egress_ports(manifests, deployment).get(443, [])}


def test_https_goes_to_s3_and_the_vpc_endpoints_only_where_needed(manifests, wiring):
    """The API token comes from Secrets Manager through its interface endpoint (the VPC CIDR); S3 through the
    gateway endpoint, at public addresses NetworkPolicy cannot name (any address but instance metadata)."""
    assert wiring.vpc_cidr == "10.40.0.0/16" and wiring.api_token_secret_arn
    for name in ("inference-service", "consumer-service", "analytics-service"):
        assert https_destinations(manifests, name) == {"0.0.0.0/0", "10.40.0.0/16"}, name
    # The committed seed's cameras are keys of the camera Secret: no AWS API, no S3.
    assert 443 not in egress_ports(manifests, "frame-publisher")


def test_https_to_s3_narrows_to_the_given_ranges(wiring):
    """With s3_cidrs (the region's S3 ranges, or the VPC CIDR with an S3 interface endpoint) nothing on 443
    is open to any address; without a token the VPC CIDR is not needed either."""
    from tests.k8s.k8s_helpers import synthesize

    ranges = ["52.218.0.0/17", "3.5.64.0/21"]
    manifests = synthesize(wiring.model_copy(update={"s3_cidrs": ranges}))
    for name in ("inference-service", "consumer-service", "analytics-service"):
        assert https_destinations(manifests, name) == {*ranges, "10.40.0.0/16"}, name
    no_token = synthesize(wiring.model_copy(update={"s3_cidrs": ranges, "api_token_secret_arn": None}))
    assert https_destinations(no_token, "inference-service") == set(ranges)


def test_publishers_reading_secrets_manager_reach_the_vpc_endpoints_only(wiring):
    from tests.k8s.k8s_helpers import synthesize

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vidpipe/yard-AbC123"
    seeded = wiring.model_validate({**wiring.model_dump(), "streams": [{"id": "yard", "source": arn}]})
    assert https_destinations(synthesize(seeded), "frame-publisher") == {"10.40.0.0/16"}
    # A secret only a stream added at runtime names: listed in camera_secret_arns.
    listed = wiring.model_validate({**wiring.model_dump(), "camera_secret_arns": [arn]})
    assert https_destinations(synthesize(listed), "frame-publisher") == {"10.40.0.0/16"}


def test_kafka_egress_can_be_limited_to_the_vpc(wiring):
    from tests.k8s.k8s_helpers import synthesize

    manifests = synthesize(wiring.model_copy(update={"vpc_cidr": "10.40.0.0/16"}))
    kafka = egress_ports(manifests, "consumer-service")[9098]
    assert kafka == [{"ipBlock": {"cidr": "10.40.0.0/16"}}]


def test_test_source_accepts_only_publishers(manifests):
    policy = manifests.get("NetworkPolicy", "rtsp-test-source")["spec"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": 8554, "protocol": "TCP"}]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "frame-publisher"}}}]


IMDS = ipaddress.ip_network("169.254.169.254/32")


def ip_blocks(manifests) -> list[tuple[str, dict]]:
    return [
        (policy["metadata"]["name"], peer["ipBlock"])
        for policy in manifests.kind("NetworkPolicy")
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]


def _contains_imds(cidr: str) -> bool:
    block = ipaddress.ip_network(cidr)
    return block.version == 4 and IMDS.subnet_of(block)


def test_no_egress_rule_reaches_instance_metadata(manifests, wiring):
    """Pods never reach IMDS (the node role's credentials): every ipBlock holding 169.254.169.254 excepts it."""
    blocks = ip_blocks(manifests)
    wide = [(name, b) for name, b in blocks if _contains_imds(b["cidr"])]
    assert len(wide) >= 3, "HTTPS and the publishers' camera egress use 0.0.0.0/0: the check must see them"
    assert any(name == "frame-publisher" for name, _ in wide)
    for name, block in wide:
        assert block.get("except") == [str(IMDS)], f"{name}: {block}"
        assert block["cidr"] != str(IMDS), f"{name} allows the metadata address itself"
    # Blocks that do not hold it carry no `except` (the API server refuses an except outside the cidr).
    assert all("except" not in b for _, b in blocks if not _contains_imds(b["cidr"]))


def test_kafka_egress_without_a_vpc_cidr_also_excludes_metadata(wiring):
    from tests.k8s.k8s_helpers import synthesize

    manifests = synthesize(wiring.model_copy(update={"vpc_cidr": None}))
    kafka = egress_ports(manifests, "consumer-service")[9098]
    assert kafka == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]
