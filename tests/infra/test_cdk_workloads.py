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
    for name in ("consumer-service", "inference-service", "analytics-service"):  # publishers: one per stream
        assert name in text
    assert '\\"kind\\":\\"Deployment\\"' in text
    # Broker list imported from the data stack, images from the asset repository, bucket by name.
    assert "KafkaClusterBootstrapBrokers" in text and "Fn::ImportValue" in text
    assert text.count("cdk-hnb659fds-container-assets") >= 3  # consumer, inference, analytics (+ publishers)
    assert "vidpipe-dev-archive-" in text and "/models/yolov4-tiny.onnx" in text and "/archive" in text
    for account in ("consumer-service", "inference-service", "analytics-service"):
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
