"""checkov's suppressions: each on the resource it is about, with a reason, and only for findings that exist.

`make checkov` runs checkov over `make synth` and `make k8s` (part of `make test`). These tests hold the
suppressions themselves to account, and run checkov over the variants `make checkov` does not synthesize
(the 72-hour configuration with its trail, the standalone manifests) when its virtualenv is there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cdk_app.checkov import skips_of
from tests.infra.cdk_support import ROOT

pytestmark = pytest.mark.infra

CHECKOV = ROOT / ".cache" / "checkov-venv" / "bin" / "checkov"

# Which checks may be suppressed, on which resource types: anything else is a new decision to review here.
ALLOWED = {
    "CKV_AWS_115": {"AWS::Lambda::Function"},
    "CKV_AWS_116": {"AWS::Lambda::Function"},
    "CKV_AWS_117": {"AWS::Lambda::Function"},
    "CKV_AWS_173": {"AWS::Lambda::Function"},
    "CKV_AWS_158": {"AWS::Logs::LogGroup"},
    "CKV_AWS_18": {"AWS::S3::Bucket"},
    "CKV_AWS_21": {"AWS::S3::Bucket"},
    "CKV_AWS_149": {"AWS::SecretsManager::Secret"},
    "CKV_AWS_35": {"AWS::CloudTrail::Trail"},
    "CKV_AWS_67": {"AWS::CloudTrail::Trail"},
}


def all_skips(synth) -> list[tuple[str, dict, dict]]:
    """(stack/logical id, resource, skip) for every suppression."""
    found = []
    for name, template in synth.templates.items():
        for logical_id, skips in skips_of(template).items():
            found.extend((f"{name}/{logical_id}", template["Resources"][logical_id], s) for s in skips)
    return found


@pytest.mark.parametrize("variant", ["synth", "privacy"])
def test_every_suppression_is_allowed_and_explained(variant, request):
    skips = all_skips(request.getfixturevalue(variant))
    assert skips
    for where, resource, skip in skips:
        assert set(skip) == {"id", "comment"}, where
        assert resource["Type"] in ALLOWED.get(skip["id"], set()), f"{where}: {skip['id']} is not a reviewed skip"
        assert len(skip["comment"].split()) >= 8 and "\n" not in skip["comment"], f"{where}: {skip['id']}"


def test_lambda_suppressions_match_what_each_handler_is(synth):
    """117 (VPC) only for handlers outside the VPC, 173 (environment) only for those with variables."""
    lambdas = 0
    for template in synth.templates.values():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            lambdas += 1
            ids = {s["id"] for s in skips_of(template).get(logical_id, [])}
            props = resource["Properties"]
            assert {"CKV_AWS_115", "CKV_AWS_116"} <= ids, logical_id
            assert ("CKV_AWS_117" in ids) == ("VpcConfig" not in props), logical_id
            assert ("CKV_AWS_173" in ids) == bool(props.get("Environment")), logical_id
    assert lambdas >= 4


def test_the_service_deployments_and_jobs_carry_their_image_suppressions(request):
    from cdk8s_app.pods import ASSET_IMAGE_CHECKOV_SKIPS

    manifests = request.getfixturevalue("standalone_manifests")
    deployments = [o for o in manifests if o["kind"] in ("Deployment", "Job")]
    assert {o["kind"] for o in deployments} == {"Deployment", "Job"}
    for deployment in deployments:
        annotations = deployment["metadata"].get("annotations", {})
        skips = dict(v.split("=", 1) for k, v in annotations.items() if k.startswith("checkov.io/skip"))
        assert skips == ASSET_IMAGE_CHECKOV_SKIPS, deployment["metadata"]["name"]
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "cdk-hnb659fds-container-assets" in container["image"], "only CDK asset images are exempt"


@pytest.fixture(scope="module")
def standalone_manifests() -> list[dict]:
    """The manifests `make k8s` writes (committed settings, sample outputs), as objects."""
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, SETTINGS, synthesize
    from vidpipe_deploy.wiring import PlatformWiring, load_settings

    return synthesize(PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, load_settings(SETTINGS))).objects


def run_checkov(framework: str, files: list[Path]) -> dict:
    if not CHECKOV.exists():
        pytest.skip("checkov's virtualenv is missing: `make checkov` installs it (.cache/checkov-venv)")
    done = subprocess.run(
        [str(CHECKOV), "--framework", framework, "--skip-download", "--quiet", "--output", "json"]
        + [arg for f in files for arg in ("--file", str(f))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else {}
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['resource']}" for r in reports for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert done.returncode == 0 and not failed, (failed, done.stderr[-2000:])
    return report


def test_checkov_passes_the_72_hour_configuration(privacy):
    """The variant with the audit trail and the S3 interface endpoint: its extra resources are clean too."""
    run_checkov("cloudformation", sorted(privacy.assembly_dir.glob("*.template.json")))


def test_checkov_passes_the_standalone_manifests(tmp_path, standalone_manifests):
    import yaml

    path = tmp_path / "workloads.k8s.yaml"
    path.write_text(yaml.safe_dump_all(standalone_manifests))
    run_checkov("kubernetes", [path])
