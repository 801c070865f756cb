"""The cdk8s charts (cdk8s_app/) are embedded in the compute stack with every CDK token resolved."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.infra


def _manifests(synth) -> dict[str, dict]:
    template = synth.templates[synth.platform.compute.stack_name]
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"}


def _chart_manifests(synth) -> dict[str, str]:
    return {
        k: json.dumps(v["Properties"]["Manifest"])
        for k, v in _manifests(synth).items()
        if "cdk8s" in json.dumps(v["Properties"]["Manifest"])
    }


def test_workload_chart_embeds_deployments_with_resolved_references(synth):
    charts = _chart_manifests(synth)
    assert charts, "no cdk8s chart in the compute stack"
    text = "\n".join(charts.values())
    assert "${Token[" not in text
    for name in ("frame-publisher", "consumer-service", "inference-service", "analytics-service"):
        assert name in text
    assert '\\"kind\\":\\"Deployment\\"' in text
    # Broker list imported from the data stack, images from the asset repository, bucket by name.
    assert "KafkaClusterBootstrapBrokers" in text and "Fn::ImportValue" in text
    assert text.count("cdk-hnb659fds-container-assets") >= 5  # the four services and the seed Job (analytics')
    assert "vidpipe-dev-archive-" in text and "/models/yolov4-tiny.onnx" in text and "/archive" in text
    for account in (
        "frame-publisher",
        "consumer-service",
        "inference-service",
        "analytics-service",
        "stream-registry-seed",
    ):
        assert f'\\"serviceAccountName\\":\\"{account}\\"' in text
    assert '\\"kind\\":\\"ServiceAccount\\"' not in text  # the stack owns them (Pod Identity)


def test_charts_wait_for_namespace_identities_and_keda(synth):
    manifests = _manifests(synth)
    charts = {k: v for k, v in manifests.items() if "cdk8s" in json.dumps(v["Properties"]["Manifest"])}
    scaled = [k for k, v in charts.items() if "ScaledObject" in json.dumps(v["Properties"]["Manifest"])]
    workloads = [k for k in charts if k not in scaled]
    assert scaled and workloads
    template = synth.templates[synth.platform.compute.stack_name]
    helm = next(k for k, v in template["Resources"].items() if v["Type"] == "Custom::AWSCDK-EKS-HelmChart")
    for key in scaled:
        assert helm in charts[key]["DependsOn"]
    for key in workloads:
        depends = charts[key]["DependsOn"]
        assert any("Namespacevidpipe" in d for d in depends)
        assert sum("ServiceAccount" in d for d in depends) >= 4


def test_inference_pins_the_model_file_this_deploy_uploads(synth):
    """INFERENCE_MODEL_SHA256 is the digest of the file the data stack uploads (modelDir/modelFile): the pods
    refuse any other object under the model's key. The standalone path gets it as the output ModelSha256."""
    import hashlib

    from tests.infra.cdk_support import chart_objects, find

    model = synth.platform.data.model
    assert model.path.name == synth.platform.config.model_file
    digest = hashlib.sha256(model.path.read_bytes()).hexdigest()
    template = synth.templates[synth.platform.compute.stack_name]
    config = find(chart_objects(template), "ConfigMap", "inference-service")["data"]
    assert config["INFERENCE_MODEL_SHA256"] == digest and len(digest) == 64
    assert template["Outputs"]["ModelSha256"]["Value"] == digest


def test_the_inference_pod_and_thresholds_are_sized_for_the_node_group_from_the_committed_figures(synth):
    """The embedded charts carry the pod and the KEDA thresholds sizing.py computes from figures.json for the
    inference node group's type: the file the planner reads too (tests/k8s: a changed figure moves both)."""
    import math

    from tests.infra.cdk_support import chart_objects, find
    from vidpipe_deploy import sizing

    config = synth.platform.config
    pod = sizing.for_node(config.inference_nodes.instance_types[0])
    template = synth.templates[synth.platform.compute.stack_name]
    objects = chart_objects(template)
    (container,) = find(objects, "Deployment", "inference-service")["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": f"{pod.cpu_request_m}m", "memory": f"{pod.memory_mi}Mi"}
    assert container["resources"]["limits"] == {"cpu": str(pod.cpu_limit), "memory": f"{pod.memory_mi}Mi"}
    floor = sizing.CONSUMER_INFLIGHT_FRAMES + 1
    for name, fps in (("consumer-service", pod.pipeline_fps), ("inference-service", pod.inference_fps)):
        (trigger,) = find(objects, "ScaledObject", name)["spec"]["triggers"]
        assert int(trigger["metadata"]["lagThreshold"]) == max(floor, math.floor(fps * 2.0)), name


def test_inference_keeps_its_gate_verdicts_beside_the_model(synth):
    from tests.infra.cdk_support import chart_objects, find

    template = synth.templates[synth.platform.compute.stack_name]
    config = find(chart_objects(template), "ConfigMap", "inference-service")["data"]
    model, gates = config["INFERENCE_MODEL_URI"], config["INFERENCE_GATE_CACHE_URI"]
    assert gates.startswith("s3://vidpipe-dev-archive-") and gates.endswith("/gate-verdicts/")
    assert model.split("/")[2] == gates.split("/")[2], "the model's bucket"
