"""Every container is hardened: non-root uid 10001, read-only root, no capabilities, seccomp."""

from __future__ import annotations

import pytest

from tests.k8s.k8s_helpers import containers

pytestmark = pytest.mark.infra


def test_every_container_is_hardened(manifests):
    deployments = [*manifests.kind("Deployment"), *manifests.kind("Job")]
    assert {d["kind"] for d in deployments} == {"Deployment", "Job"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False, "no workload calls the Kubernetes API"
        for container in containers(deployment):
            ctx = container["securityContext"]
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"], f"{where}: writable /tmp"
            assert container["resources"]["requests"] and container["resources"]["limits"], where
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes["tmp"]


def test_model_cache_is_on_the_writable_tmp(manifests):
    assert manifests.config_map("inference-service")["INFERENCE_MODEL_CACHE_DIR"].startswith("/tmp/")


def test_services_run_under_their_own_service_accounts(manifests, wiring):
    expected = {
        "inference-service": wiring.service_accounts.get("inference"),
        "consumer-service": wiring.service_accounts.get("consumer"),
        "analytics-service": wiring.service_accounts.get("analytics"),
        "frame-publisher": wiring.service_accounts.get("publisher"),
    }
    assert all(expected.values()), "the outputs file names each ServiceAccount"
    for name, account in expected.items():
        assert manifests.get("Deployment", name)["spec"]["template"]["spec"]["serviceAccountName"] == account
    # The registry seed Job: an identity of its own (the CDK app's, which may read the API token only).
    (job,) = manifests.kind("Job")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "stream-registry-seed"


def test_workloads_spread_across_zones_and_have_disruption_budgets(manifests):
    for name in ("inference-service", "consumer-service", "analytics-service", "frame-publisher"):
        spread = manifests.get("Deployment", name)["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert "topology.kubernetes.io/zone" in {c["topologyKey"] for c in spread}
        pdb = manifests.get("PodDisruptionBudget", name)
        assert pdb["spec"]["selector"] == manifests.get("Deployment", name)["spec"]["selector"]


def test_namespace_enforces_the_restricted_pod_security_profile(manifests, wiring):
    namespace = manifests.get("Namespace", wiring.namespace)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "namespace" not in namespace["metadata"]
