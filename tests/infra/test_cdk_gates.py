"""The security gates every synth must pass: cdk-nag (AwsSolutions) and cfn-lint."""

from __future__ import annotations

import subprocess

import pytest

from cdk_app.nag_report import summarize
from tests.infra.cdk_support import cfn_lint_command

pytestmark = pytest.mark.infra


def test_no_unacknowledged_nag_findings(synth):
    # The session synth would already have raised ValidationFailed; the report says so too.
    summary = summarize(synth.assembly_dir)
    assert summary.unacknowledged == []


def test_every_acknowledgement_is_narrow_and_explained(synth):
    summary = summarize(synth.assembly_dir)
    assert summary.acknowledged, "the nag plugin did not run"
    for finding, path, reason in summary.acknowledged:
        assert reason.strip() and "\n" not in reason, f"{finding} at {path}: one-line reason required"
        stack = path.strip("/").split("/")
        assert len(stack) >= 2, f"{finding} acknowledged on a whole stack ({path}): acknowledge the construct"
    # Wildcards are acknowledged one finding at a time, never the whole rule.
    assert all("[" in f for f, _, _ in summary.acknowledged if f.startswith(("AwsSolutions-IAM5", "AwsSolutions-IAM4")))


def test_cfn_lint_passes_on_every_template(synth):
    command = cfn_lint_command()
    if command is None:
        pytest.fail("cfn-lint is not installed (requirements.txt pins it)")
    templates = sorted(str(p) for p in synth.assembly_dir.glob("*.template.json"))
    assert len(templates) == len(synth.templates) == 4  # network, data, compute, deploy-access
    result = subprocess.run([*command, "-i", "W3005", "--", *templates], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nag_clean_when_the_deploying_account_and_region_are_known(tmp_path_factory, monkeypatch):
    """`cdk deploy` passes CDK_DEFAULT_ACCOUNT/REGION: literals then replace pseudo parameters in
    the findings, and every acknowledgement must still match."""
    import aws_cdk as cdk

    from cdk_app.app import build_platform
    from tests.infra.cdk_support import session_context

    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "111111111111")  # a placeholder, not a real account
    monkeypatch.setenv("CDK_DEFAULT_REGION", "eu-west-1")
    outdir = tmp_path_factory.mktemp("with-env")
    app = cdk.App(context=session_context(tmp_path_factory), outdir=str(outdir))
    platform = build_platform(app)
    app.synth()  # raises ValidationFailed on an unmatched acknowledgement
    assert platform.compute.region == "eu-west-1"
    assert summarize(outdir).unacknowledged == []
