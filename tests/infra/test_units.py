"""Renaming a service or changing its port is one edit to its unit (vidpipe_deploy/units.py): the CDK app and
the charts both follow. Built here with renamed units, as `build_platform(..., services=...)` and
`build_platform_charts` take them."""

from __future__ import annotations

import json

import pytest
from cdk_support import MODEL, session_context

from vidpipe_deploy.units import SERVICES, identity_outputs

pytestmark = pytest.mark.infra

RENAMED = SERVICES.model_copy(
    update={
        "consumer": SERVICES.consumer.model_copy(update={"name": "frame-consumer", "port": 9181}),
        "inference": SERVICES.inference.model_copy(update={"name": "detector", "port": 9090}),
    }
)


@pytest.fixture(scope="module")
def renamed_cdk(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    # The images are built from services/<name>/: a tree whose folders carry the new names.
    root = tmp_path_factory.mktemp("renamed-root")
    (root / "services").mkdir()
    (root / "services" / "Dockerfile").write_text("FROM scratch\n")
    for unit in RENAMED.all():
        (root / "services" / unit.name).mkdir()
        (root / "services" / unit.name / "pyproject.toml").write_text("")
    context = session_context(tmp_path_factory)
    if MODEL.exists():
        context["vidpipe:modelDir"] = str(MODEL.parent)
    outdir = tmp_path_factory.mktemp("renamed")
    app = cdk.App(context=context, outdir=str(outdir))
    platform = build_platform(app, project_root=root, services=RENAMED)
    app.synth()  # cdk-nag included: the renamed identities' wildcards are acknowledged from their units
    compute = platform.compute
    return compute, json.loads((outdir / f"{compute.artifact_id}.template.json").read_text())


def _resources(template: dict, type_: str) -> list[dict]:
    return [r for r in template["Resources"].values() if r["Type"] == type_]


def test_the_cdk_app_follows_a_renamed_service(renamed_cdk):
    compute, template = renamed_cdk
    accounts = {a["Properties"]["ServiceAccount"] for a in _resources(template, "AWS::EKS::PodIdentityAssociation")}
    assert accounts == {"frame-publisher", "frame-consumer", "detector", "analytics-service", "keda-operator"}
    assert {"frame-consumer", "detector"} <= set(compute.identities)
    for name in ("frame-consumer", "detector"):
        account_key, role_key = identity_outputs(name)
        assert template["Outputs"][account_key]["Value"] == name and role_key in template["Outputs"]
    assert "ConsumerServiceServiceAccount" not in template["Outputs"]
    charts = "\n".join(
        json.dumps(r["Properties"]["Manifest"]) for r in _resources(template, "Custom::AWSCDK-EKS-KubernetesResource")
    )
    for expected in (
        '\\"serviceAccountName\\":\\"frame-consumer\\"',
        '\\"serviceAccountName\\":\\"detector\\"',
        '\\"containerPort\\":9090',
        '\\"CONSUMER_HEALTH_PORT\\":\\"9181\\"',
    ):
        assert expected in charts, expected
    assert "consumer-service" not in charts and "inference-service" not in charts


def test_the_charts_follow_a_renamed_service(tmp_path):
    from cdk8s_app.wiring import PlatformWiring, load_settings
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, SETTINGS, containers, synthesize

    outputs = json.loads(SAMPLE_OUTPUTS.read_text())
    for stack in outputs.values():  # an outputs file as the renamed CDK app writes it
        for old, new in (("consumer-service", "frame-consumer"), ("inference-service", "detector")):
            key = identity_outputs(old)[0]
            if key in stack:
                stack[identity_outputs(new)[0]] = new
                del stack[key]
    path = tmp_path / "renamed-outputs.json"
    path.write_text(json.dumps(outputs))
    wiring = PlatformWiring.from_outputs_file(path, load_settings(SETTINGS), services=RENAMED)
    manifests = synthesize(wiring)
    detector = manifests.get("Deployment", "detector")
    assert detector["spec"]["template"]["spec"]["serviceAccountName"] == "detector"
    assert containers(detector)[0]["ports"][0]["containerPort"] == 9090
    assert manifests.get("Service", "inference")["spec"]["ports"][0]["port"] == 9090
    assert manifests.config_map("detector")["INFERENCE_PORT"] == "9090"
    consumer = manifests.config_map("frame-consumer")
    assert consumer["CONSUMER_INFERENCE_URL"].endswith(":9090") and consumer["CONSUMER_HEALTH_PORT"] == "9181"
    policy = manifests.get("NetworkPolicy", "detector")["spec"]
    assert policy["ingress"][0]["ports"][0]["port"] == 9090
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "frame-consumer"
    assert {o["spec"]["scaleTargetRef"]["name"] for o in manifests.kind("ScaledObject")} == {
        "frame-consumer",
        "detector",
    }
    assert not [o for o in manifests.objects if o["metadata"]["name"] in ("consumer-service", "inference-service")]
