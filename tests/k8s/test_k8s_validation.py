"""Every synthesized object validates: Kubernetes 1.36 strict schemas (the cluster's minor), KEDA kinds against the CRD."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from cdk8s_app.validate import KUBERNETES_VERSION, crd_validators, validate_object

pytestmark = pytest.mark.infra


def test_charts_hold_the_expected_kinds(manifests):
    kinds = {o["kind"] for o in manifests.objects}
    assert {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ScaledObject",
        "TriggerAuthentication",
        "Job",
    } <= kinds
    assert not manifests.kind("ServiceAccount"), (
        "the CDK stack creates ServiceAccounts (Pod Identity); charts only reference them"
    )


def test_builtin_kinds_validate_strictly_for_the_cluster_minor(manifests):
    builtin = [o for o in manifests.objects if not o["apiVersion"].startswith("keda.sh/")]
    assert len(builtin) > 15
    for obj in builtin:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_keda_kinds_validate_against_the_crd_schema(manifests):
    keda = [o for o in manifests.objects if o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in keda} == {"ScaledObject", "TriggerAuthentication"}
    for obj in keda:
        assert (obj["apiVersion"], obj["kind"]) in crd_validators()
        assert validate_object(obj) == []


def test_crd_check_rejects_unknown_fields_and_wrong_types(manifests):
    scaled = copy.deepcopy(manifests.get("ScaledObject", "consumer-service"))
    scaled["spec"]["minReplicas"] = 1  # HPA spelling, not KEDA's
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100  # metadata values are strings
    messages = " | ".join(p.message for p in validate_object(scaled))
    assert "minReplicas" in messages and "is not of type 'string'" in messages


def test_builtin_check_rejects_unknown_fields(manifests):
    deployment = copy.deepcopy(manifests.get("Deployment", "consumer-service"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    assert validate_object(deployment)
