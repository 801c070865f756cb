"""Renaming a service is renaming its folder (and its registry line); changing its port is one edit to its
unit (services/<folder>/deploy.py); adding a fifth is a folder with a deploy unit from the template
(services/deploy/template/deploy.py) and a registry line. The CDK app and the charts both follow. Built here
with renamed units and a fifth one, as `build_platform(..., services=...)` and `build_platform_charts` take
them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.infra.cdk_support import MODEL, ROOT, session_context
from vidpipe_deploy.registry import RegistryError, load_unit, registered
from vidpipe_deploy.units import ServiceUnit, identity_outputs

pytestmark = pytest.mark.infra

SERVICES = registered()
TEMPLATE = ROOT / "services" / "deploy" / "template" / "deploy.py"
FIFTH = "plate-reader"


def fifth_service(services_dir: Path) -> ServiceUnit:
    """A new service's folder as a user starts it: its package declaration and the template's deploy unit."""
    folder = services_dir / FIFTH
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text("")
    shutil.copy(TEMPLATE, folder / "deploy.py")
    return load_unit(folder)


RENAMED = SERVICES.replace(
    SERVICES.consumer.model_copy(update={"name": "frame-consumer", "port": 9181}),
    SERVICES.inference.model_copy(update={"name": "detector", "port": 9090}),
)


@pytest.fixture(scope="module")
def renamed_cdk(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform
    from cdk_app.constructs.observability import ALERT_RULES

    # The images are built from services/<name>/: a tree whose folders carry the new names.
    root = tmp_path_factory.mktemp("renamed-root")
    (root / "services").mkdir()
    (root / "services" / "Dockerfile").write_text("FROM scratch\n")
    for unit in RENAMED.all():
        (root / "services" / unit.name).mkdir()
        (root / "services" / unit.name / "pyproject.toml").write_text("")
    services = RENAMED.add(fifth_service(root / "services"))
    context = session_context(tmp_path_factory)
    if MODEL.exists():
        context["vidpipe:modelDir"] = str(MODEL.parent)
    outdir = tmp_path_factory.mktemp("renamed")
    app = cdk.App(context=context, outdir=str(outdir))
    # The alert rules are the project's own (they follow no service's name).
    platform = build_platform(app, project_root=root, services=services, alert_rules=ROOT / ALERT_RULES)
    app.synth()  # cdk-nag included: the renamed and new identities' wildcards are acknowledged from their units
    compute = platform.compute
    return compute, json.loads((outdir / f"{compute.artifact_id}.template.json").read_text())


def _resources(template: dict, type_: str) -> list[dict]:
    return [r for r in template["Resources"].values() if r["Type"] == type_]


def test_the_cdk_app_follows_a_renamed_service(renamed_cdk):
    compute, template = renamed_cdk
    accounts = {a["Properties"]["ServiceAccount"] for a in _resources(template, "AWS::EKS::PodIdentityAssociation")}
    assert accounts == {
        "frame-publisher",
        "frame-consumer",
        "detector",
        "analytics-service",
        "stream-registry-seed",
        FIFTH,
        "keda-operator",
    }
    assert {"frame-consumer", "detector", FIFTH} <= set(compute.identities)
    assert template["Outputs"]["PlateReaderImageUri"]["Description"] == f"{FIFTH} image"
    for name in ("frame-consumer", "detector", FIFTH):
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
        '\\"serviceAccountName\\":\\"plate-reader\\"',
        '\\"name\\":\\"plate-reader\\"',
    ):
        assert expected in charts, expected
    assert "consumer-service" not in charts and "inference-service" not in charts


def test_the_charts_follow_a_renamed_service(tmp_path):
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, SETTINGS, containers, synthesize
    from vidpipe_deploy.wiring import PlatformWiring, load_settings

    outputs = json.loads(SAMPLE_OUTPUTS.read_text())
    for stack in outputs.values():  # an outputs file as the renamed CDK app writes it
        for old, new in (("consumer-service", "frame-consumer"), ("inference-service", "detector")):
            key = identity_outputs(old)[0]
            if key in stack:
                stack[identity_outputs(new)[0]] = new
                del stack[key]
        if "PublisherImageUri" in stack:  # the fifth service's image, as the CDK app outputs it
            stack["PlateReaderImageUri"] = stack["PublisherImageUri"].rpartition(":")[0] + ":" + "f" * 64
    path = tmp_path / "renamed-outputs.json"
    path.write_text(json.dumps(outputs))
    services = RENAMED.add(fifth_service(tmp_path / "services"))
    wiring = PlatformWiring.from_outputs_file(path, load_settings(SETTINGS), services=services)
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
        "frame-publisher",
        "frame-consumer",
        "detector",
    }
    assert not [o for o in manifests.objects if o["metadata"]["name"] in ("consumer-service", "inference-service")]
    # The fifth service: its Deployment under its own identity, its Service, settings and network policy.
    reader = manifests.get("Deployment", FIFTH)["spec"]["template"]["spec"]
    assert reader["serviceAccountName"] == FIFTH and reader["containers"][0]["image"].endswith(":" + "f" * 64)
    assert manifests.get("Service", FIFTH)["spec"]["ports"][0]["port"] == 8000
    assert manifests.config_map(FIFTH)["KAFKA_CLIENT_ID"] == FIFTH
    assert manifests.get("NetworkPolicy", FIFTH)["spec"]["egress"]


def test_a_registry_line_without_a_deploy_unit_is_refused_by_name(tmp_path):
    (tmp_path / "orphan").mkdir()
    with pytest.raises(RegistryError, match="orphan/deploy.py is missing"):
        load_unit(tmp_path / "orphan")
    (tmp_path / "orphan" / "deploy.py").write_text("UNIT = 'not a unit'\n")
    with pytest.raises(RegistryError, match="defines no UNIT"):
        load_unit(tmp_path / "orphan")


def test_a_renamed_folder_renames_the_service(tmp_path):
    """The unit takes its name from its folder: `git mv services/consumer-service services/frame-consumer`
    and the registry line are the whole rename."""
    folder = tmp_path / "frame-consumer"
    folder.mkdir()
    shutil.copy(ROOT / "services" / "consumer-service" / "deploy.py", folder / "deploy.py")
    unit = load_unit(folder)
    assert (unit.name, unit.role) == ("frame-consumer", "consumer")
    assert identity_outputs(unit.name) == ("FrameConsumerServiceAccount", "FrameConsumerRoleArn")
