"""The charts on a real control plane (Kubernetes 1.36, tools/k8s): KEDA's CRDs and every object of the
synthesized charts accepted by server-side apply, every Deployment's pods admitted under the namespace's
PodSecurity `restricted`, and what should be refused refused, with the API server's own words."""

from __future__ import annotations

import copy
import uuid

import pytest

from tests.fixtures.control_plane import pod_templates
from tools.k8s.client import ApiError, wait_for
from tools.k8s.control_plane import KUBERNETES_VERSION

pytestmark = pytest.mark.infra


def test_the_control_plane_is_the_version_eks_runs(control_plane):
    from cdk_app.config import KUBERNETES_VERSION as EKS_VERSION

    version = control_plane.client.request("GET", "/version")
    assert version["gitVersion"] == KUBERNETES_VERSION
    assert f"{version['major']}.{version['minor']}" == EKS_VERSION


def test_keda_crds_are_served(control_plane, keda_crds):
    names = {crd["spec"]["names"]["kind"] for crd in keda_crds}
    assert {"ScaledObject", "TriggerAuthentication", "ScaledJob"} <= names
    resources = control_plane.client.request("GET", "/apis/keda.sh/v1alpha1")["resources"]
    assert {"scaledobjects", "triggerauthentications"} <= {r["name"] for r in resources}


def test_every_object_of_the_charts_is_on_the_server(control_plane, deployed_charts):
    for obj in deployed_charts.manifests.objects:
        meta = obj["metadata"]
        live = control_plane.client.get_object(obj)
        managers = {entry["manager"] for entry in live["metadata"].get("managedFields", [])}
        assert "vidpipe-deploy" in managers, f"{obj['kind']}/{meta['name']} was applied server-side"
        assert meta.get("labels", {}).items() <= live["metadata"].get("labels", {}).items(), meta["name"]


def test_reapplying_the_charts_changes_nothing(control_plane, deployed_charts):
    """A second `cdk deploy` with the same charts is a no-op: no object's spec generation moves (no rollout),
    and objects without one keep their resourceVersion."""

    def versions() -> dict[str, str]:
        seen = {}
        for obj in deployed_charts.manifests.objects:
            meta = control_plane.client.get_object(obj)["metadata"]
            seen[f"{obj['kind']}/{meta['name']}"] = str(meta.get("generation") or meta["resourceVersion"])
        return seen

    before = versions()
    for objects in deployed_charts.manifests.charts.values():
        control_plane.apply(objects, "vidpipe-deploy")
    assert versions() == before


def test_the_namespace_enforces_restricted(control_plane, deployed_charts):
    labels = control_plane.client.get("Namespace", deployed_charts.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # the policy version the server enforces is one it knows (it rejects a label it does not)
    assert labels.get("pod-security.kubernetes.io/enforce-version", "latest") in (
        "latest",
        KUBERNETES_VERSION.rsplit(".", 1)[0],
    )


def _pod_from_template(workload: dict, name: str) -> dict:
    template = copy.deepcopy(workload["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": name, "namespace": workload["metadata"]["namespace"]},
        "spec": template["spec"],
    }


def test_every_workloads_pod_is_admitted_server_side(control_plane, deployed_charts):
    """Each rendered pod (Deployments and Jobs), created with dryRun=All: every admission plugin runs
    (PodSecurity, ServiceAccount, LimitRanger, webhooks) and nothing is stored."""
    workloads = [w for w, _ in pod_templates(deployed_charts.manifests)]
    assert {w["kind"] for w in workloads} >= {"Deployment"}
    for workload in workloads:
        pod = _pod_from_template(workload, f"dry-run-{workload['metadata']['name']}"[:63])
        admitted = control_plane.client.create(pod, dry_run=True)
        assert admitted["metadata"]["uid"], workload["metadata"]["name"]


def test_every_deployments_pods_are_created_by_its_replicaset(control_plane, deployed_charts):
    """The controllers' own path: Deployment -> ReplicaSet -> Pods, admitted, scheduled on the pool the
    chart selects, Ready (kwok's nodes run them)."""
    client = control_plane.client
    namespace = deployed_charts.namespace
    for deployment in deployed_charts.deployments():
        name = deployment["metadata"]["name"]
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        wanted = deployment["spec"].get("replicas", 1)

        def ready_pods(selector: str = selector, wanted: int = wanted) -> list[dict] | None:
            pods = client.items("Pod", namespace, labelSelector=selector)
            ready = [
                p
                for p in pods
                if any(
                    c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
                )
            ]
            return ready if len(ready) >= wanted else None

        def events(name: str = name) -> str:
            found = client.items("Event", namespace)
            return "; ".join(f"{e['involvedObject']['name']}: {e['reason']}: {e['message']}" for e in found[-20:])

        pods = wait_for(f"{name}: {wanted} Ready pod(s)", ready_pods, 60, describe=events)
        pool = deployment["spec"]["template"]["spec"]["nodeSelector"]["vidpipe.io/pool"]
        for pod in pods:
            node = client.get("Node", pod["spec"]["nodeName"])
            assert node["metadata"]["labels"]["vidpipe.io/pool"] == pool, f"{name} on {node['metadata']['name']}"
        for rs in client.items("ReplicaSet", namespace, labelSelector=selector):
            failures = [c for c in rs.get("status", {}).get("conditions", []) if c["type"] == "ReplicaFailure"]
            assert not failures, f"{rs['metadata']['name']}: {failures}"


def test_every_jobs_pod_is_admitted_and_runs_to_completion(control_plane, deployed_charts):
    """The Job controller's path: the Job's pod created, admitted, scheduled, run (kwok) and Succeeded."""
    client = control_plane.client
    namespace = deployed_charts.namespace
    for job in deployed_charts.manifests.kind("Job"):
        name = job["metadata"]["name"]

        def complete(name: str = name) -> bool:
            conditions = client.get("Job", name, namespace).get("status", {}).get("conditions") or []
            return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

        wait_for(f"Job {name} Complete", complete, 60, describe=lambda: str(client.items("Event", namespace)[-10:]))
        pods = client.items("Pod", namespace, labelSelector=f"job-name={name}")
        assert pods and all(p["status"]["phase"] == "Succeeded" for p in pods), [p["status"] for p in pods]


def _one_deployment(deployed_charts, name: str = "consumer-service") -> dict:
    return deployed_charts.manifests.get("Deployment", name)


@pytest.mark.parametrize(
    ("breach", "expected"),
    [
        ("privileged", 'privileged (container "{c}" must not set securityContext.privileged=true)'),
        ("no-seccomp", "seccompProfile"),
        ("root", "runAsNonRoot"),
    ],
)
def test_a_non_compliant_pod_is_rejected_by_pod_security(control_plane, deployed_charts, breach, expected):
    pod = _pod_from_template(_one_deployment(deployed_charts), f"breach-{breach}-{uuid.uuid4().hex[:6]}")
    container = pod["spec"]["containers"][0]
    if breach == "privileged":
        container["securityContext"]["privileged"] = True
        container["securityContext"]["allowPrivilegeEscalation"] = True
    elif breach == "no-seccomp":
        del pod["spec"]["securityContext"]["seccompProfile"]
        del container["securityContext"]["seccompProfile"]
    else:
        for ctx in (pod["spec"]["securityContext"], container["securityContext"]):
            ctx["runAsNonRoot"] = False
            ctx["runAsUser"] = 0
    with pytest.raises(ApiError) as refused:
        control_plane.client.create(pod)
    err = refused.value
    assert err.status == 403 and err.reason == "Forbidden", err
    assert f'violates PodSecurity "restricted:{KUBERNETES_VERSION.rsplit(".", 1)[0]}"' in err.message, err.message
    assert expected.format(c=container["name"]) in err.message, err.message


def _scaled_object(deployed_charts) -> dict:
    return copy.deepcopy(deployed_charts.manifests.get("ScaledObject", "consumer-service"))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "pollingInterval",
            "fast",
            'spec.pollingInterval: Invalid value: "string": spec.pollingInterval in body must be of type integer',
        ),
        ("scaleTargetRef", None, "spec.scaleTargetRef: Required value"),
        ("maxReplicaCounts", 6, 'unknown field "spec.maxReplicaCounts"'),
    ],
)
def test_an_invalid_scaled_object_is_rejected_by_the_crd_schema(control_plane, deployed_charts, field, value, expected):
    scaled_object = _scaled_object(deployed_charts)
    scaled_object["metadata"]["name"] = f"invalid-{uuid.uuid4().hex[:6]}"
    if value is None:
        del scaled_object["spec"][field]
    else:
        scaled_object["spec"][field] = value
    with pytest.raises(ApiError) as refused:
        control_plane.client.create(scaled_object)
    err = refused.value
    assert err.status in (400, 422), err
    assert expected in err.message, err.message
