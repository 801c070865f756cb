"""Rollouts and disruptions on the real control plane, kwok's nodes playing the kubelets: every Deployment
reaches Ready, an image change rolls without breaking the PodDisruptionBudget, and a drain through the
eviction API waits for the budgets."""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fixtures.control_plane import FIELD_MANAGER
from tools.k8s.client import ApiError, wait_for

pytestmark = pytest.mark.infra

SCALED = "consumer-service"  # HPA-driven (no replicas in the chart): scaled here as the HPA would
REPLICAS = 3


def _ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return "deletionTimestamp" not in pod["metadata"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def _selector(deployment: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())


def _rolled_out(client, namespace: str, name: str) -> dict | None:
    live = client.get("Deployment", name, namespace)
    spec, status = live["spec"], live.get("status", {})
    want = spec["replicas"]
    done = (
        status.get("observedGeneration", 0) >= live["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("readyReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want  # no old pods left
    )
    return live if done else None


def _scale(client, namespace: str, name: str, replicas: int) -> None:
    client.patch("Deployment", name, namespace, {"spec": {"replicas": replicas}}, subresource="scale")
    wait_for(f"{name} at {replicas} ready replicas", lambda: _rolled_out(client, namespace, name), 60)


def test_every_deployment_rolls_out_to_ready(control_plane, deployed_charts):
    client = control_plane.client
    for deployment in deployed_charts.deployments():
        name = deployment["metadata"]["name"]
        live = wait_for(
            f"{name} rolled out", lambda name=name: _rolled_out(client, deployed_charts.namespace, name), 60
        )
        progressing = [c for c in live["status"]["conditions"] if c["type"] == "Progressing"]
        assert progressing and progressing[0]["reason"] == "NewReplicaSetAvailable", progressing


def test_an_image_change_rolls_without_breaking_its_pdb(control_plane, deployed_charts):
    """The next `cdk deploy` with a new image: the Deployment surges one pod at a time (maxUnavailable 0), and
    at every moment the PDB has at least its desired healthy pods."""
    client = control_plane.client
    namespace = deployed_charts.namespace
    _scale(client, namespace, SCALED, REPLICAS)
    deployment = copy.deepcopy(deployed_charts.manifests.get("Deployment", SCALED))
    pdb = deployed_charts.manifests.get("PodDisruptionBudget", SCALED)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    new_image = container["image"].rsplit(":", 1)[0] + ":" + "f" * 64
    container["image"] = new_image
    control_plane.apply([deployment], FIELD_MANAGER)

    lowest_ready, lowest_margin, seen = REPLICAS, 1 << 30, 0
    deadline = time.monotonic() + 60
    while True:
        pods = client.items("Pod", namespace, labelSelector=_selector(deployment))
        lowest_ready = min(lowest_ready, sum(_ready(p) for p in pods))
        status = client.get("PodDisruptionBudget", SCALED, namespace).get("status", {})
        if "desiredHealthy" in status:
            lowest_margin = min(lowest_margin, status["currentHealthy"] - status["desiredHealthy"])
        seen += 1
        live = _rolled_out(client, namespace, SCALED)
        if live and all(p["spec"]["containers"][0]["image"] == new_image for p in pods if _ready(p)):
            break
        assert time.monotonic() < deadline, f"rollout of {new_image} not done in 60 s: {live}"
        time.sleep(0.05)
    unavailable = pdb["spec"]["maxUnavailable"]
    assert lowest_ready >= REPLICAS - unavailable, f"{lowest_ready} ready of {REPLICAS} during the rollout"
    assert lowest_margin >= 0, f"the PDB fell {-lowest_margin} below its desired healthy pods"
    assert seen > 1
    replica_sets = client.items("ReplicaSet", namespace, labelSelector=_selector(deployment))
    old = [rs for rs in replica_sets if rs["spec"]["template"]["spec"]["containers"][0]["image"] != new_image]
    assert old and all(rs["spec"]["replicas"] == 0 for rs in old), "the old ReplicaSet is scaled to zero, kept"


def test_a_drain_through_the_eviction_api_respects_the_pdbs(control_plane, deployed_charts):
    """Two nodes of the general pool drained at once (a node group replaced): every pod leaves through the
    eviction API, an eviction that would take a Deployment below its budget is refused (429) until the
    replacement is Ready elsewhere, and no Deployment ever has more pods unavailable than its PDB allows."""
    client = control_plane.client
    namespace = deployed_charts.namespace
    _scale(client, namespace, SCALED, REPLICAS)
    scaled = deployed_charts.manifests.get("Deployment", SCALED)
    hosts = sorted(
        {p["spec"]["nodeName"] for p in client.items("Pod", namespace, labelSelector=_selector(scaled)) if _ready(p)}
    )
    general = sorted(n["metadata"]["name"] for n in client.items("Node", labelSelector="vidpipe.io/pool=general"))
    # two nodes holding the scaled Deployment's pods (one when they all share it), never the whole pool
    drained = hosts[:2] if len(hosts) > 1 else hosts
    assert len(drained) < len(general)
    budgets = {
        pdb["metadata"]["name"]: (
            deployed_charts.manifests.get("Deployment", pdb["metadata"]["name"]),
            pdb["spec"]["maxUnavailable"],
        )
        for pdb in deployed_charts.manifests.kind("PodDisruptionBudget")
    }
    expected = {name: client.get("Deployment", name, namespace)["spec"]["replicas"] for name in budgets}

    def settled(name: str) -> bool:
        """The disruption controller has counted the pods as they are now (a budget computed during an
        earlier rollout's surge would allow one disruption too many)."""
        status = client.get("PodDisruptionBudget", name, namespace).get("status", {})
        return status.get("expectedPods") == status.get("currentHealthy") == expected[name] and status.get(
            "disruptionsAllowed"
        ) == min(budgets[name][1], expected[name])

    for name in budgets:
        wait_for(f"the PDB of {name} settled", lambda name=name: settled(name), 30)

    def check_budgets() -> None:
        for name, (deployment, max_unavailable) in budgets.items():
            ready = sum(_ready(p) for p in client.items("Pod", namespace, labelSelector=_selector(deployment)))
            assert ready >= expected[name] - max_unavailable, f"{name}: {ready} ready of {expected[name]}"

    def evict(name: str) -> tuple[str, str | None]:
        try:
            client.evict(name, namespace)
            return name, None
        except ApiError as err:
            assert err.status == 429, err
            return name, err.message

    refusals: list[str] = []
    evicted: list[str] = []
    try:
        for node in drained:
            client.patch("Node", node, None, {"spec": {"unschedulable": True}})
        deadline = time.monotonic() + 90
        while True:
            remaining = [
                p
                for p in client.items("Pod", namespace)
                if p["spec"].get("nodeName") in drained and "deletionTimestamp" not in p["metadata"]
            ]
            if not remaining:
                break
            assert time.monotonic() < deadline, f"still on {drained}: {[p['metadata']['name'] for p in remaining]}"
            # like kubectl drain, every pod of the drained nodes at once
            with ThreadPoolExecutor(max_workers=len(remaining)) as pool:
                outcomes = list(pool.map(evict, [p["metadata"]["name"] for p in remaining]))
            evicted.extend(name for name, refusal in outcomes if refusal is None)
            refusals.extend(refusal for _, refusal in outcomes if refusal is not None)
            check_budgets()
            time.sleep(0.2)
        for name in budgets:
            wait_for(f"{name} whole again", lambda name=name: _rolled_out(client, namespace, name), 60)
        check_budgets()
    finally:
        for node in drained:
            client.patch("Node", node, None, {"spec": {"unschedulable": False}})
        client.patch("Deployment", SCALED, namespace, {"spec": {"replicas": 1}}, subresource="scale")
    assert evicted
    assert refusals, "no eviction met a budget: the drain never needed to wait"
    assert all("violate the pod's disruption budget" in message for message in refusals), refusals
    for pod in client.items("Pod", namespace):
        assert pod["spec"].get("nodeName") not in drained or "deletionTimestamp" in pod["metadata"], pod["metadata"][
            "name"
        ]
