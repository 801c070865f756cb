"""A scraper outside the cluster (the managed Prometheus collector, from ENIs in the VPC) reaches each service's
ops port from its CIDR, and no other port."""

from __future__ import annotations

import pytest

from tests.k8s.k8s_helpers import synthesize

pytestmark = pytest.mark.infra

SCRAPER_CIDR = "10.40.0.0/16"


def cidr_rules(manifests) -> dict[str, list[dict]]:
    """Ingress rules from an ipBlock, by policy name."""
    found: dict[str, list[dict]] = {}
    for policy in manifests.kind("NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if any("ipBlock" in peer for peer in rule["from"]):
                found.setdefault(policy["metadata"]["name"], []).append(rule)
    return found


def test_the_scraper_cidr_reaches_the_ops_ports_only(wiring):
    manifests = synthesize(wiring.model_copy(update={"metrics_scraper_cidr": SCRAPER_CIDR}))
    expected = {unit.name: unit for unit in wiring.services.all()}
    rules = cidr_rules(manifests)
    assert set(rules) == {f"{name}-metrics-scraper" for name in expected}
    for name, unit in expected.items():
        policy = manifests.get("NetworkPolicy", f"{name}-metrics-scraper")
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == name
        assert policy["spec"]["ingress"] == [
            {"from": [{"ipBlock": {"cidr": SCRAPER_CIDR}}], "ports": [{"port": unit.health_port, "protocol": "TCP"}]}
        ]
    # Inference's API (8080) and the analytics live view (8082 on analytics' pods) stay closed to it.
    assert manifests.get("NetworkPolicy", "inference-service-metrics-scraper")["spec"]["ingress"][0]["ports"] == [
        {"port": 8090, "protocol": "TCP"}
    ]
    # The namespace-based scrape policies stay as they were.
    assert manifests.get("NetworkPolicy", f"{next(iter(expected))}-metrics")


def test_a_token_cidr_is_accepted(wiring):
    """On the CDK path the VPC CIDR is a token until deployment."""
    token = "${Token[TOKEN.123]}"
    manifests = synthesize(wiring.model_copy(update={"metrics_scraper_cidr": token}))
    assert all(
        rule["from"] == [{"ipBlock": {"cidr": token}}] for rules in cidr_rules(manifests).values() for rule in rules
    )


def test_no_scraper_cidr_no_policy(manifests, wiring):
    assert wiring.metrics_scraper_cidr is None
    assert not any(p["metadata"]["name"].endswith("-metrics-scraper") for p in manifests.kind("NetworkPolicy"))


def test_the_scraper_cidr_is_validated(wiring):
    from vidpipe_deploy.wiring import PlatformWiring

    fields = wiring.model_dump()
    fields["services"] = wiring.services
    with pytest.raises(ValueError, match="CIDR|cidr"):
        PlatformWiring.model_validate({**fields, "metrics_scraper_cidr": "10.40.0.0/99"})
