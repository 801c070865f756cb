"""The CI deploy role: GitHub OIDC, trusted only for this repository's jobs in its GitHub environment,
allowed only to use the CDK bootstrap roles and describe the project's cluster."""

from __future__ import annotations

import json

import pytest

from tests.infra.cdk_support import TEST_GITHUB_REPOSITORY, session_context

pytestmark = pytest.mark.infra

OIDC = "token.actions.githubusercontent.com"


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def deploy_role(template: dict) -> dict:
    roles = resources(template, "AWS::IAM::Role")
    (role,) = roles.values()
    return role["Properties"]


def build(tmp_path_factory, **overrides):
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    outdir = tmp_path_factory.mktemp("deploy-access")
    app = cdk.App(context=session_context(tmp_path_factory, **overrides), outdir=str(outdir))
    platform = build_platform(app)
    app.synth()
    return platform, outdir


def test_trust_is_bound_to_the_repository_environment_and_sts_audience(synth):
    role = deploy_role(synth.templates[synth.platform.deploy_access.stack_name])
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert set(statement["Principal"]) == {"Federated"}
    # Exact matches only (StringEquals): no StringLike, no wildcard subject, no branch or pull-request subject.
    assert statement["Condition"] == {
        "StringEquals": {
            f"{OIDC}:aud": "sts.amazonaws.com",
            f"{OIDC}:sub": f"repo:{TEST_GITHUB_REPOSITORY}:environment:production",
        }
    }
    assert role["MaxSessionDuration"] == 7200
    assert role["RoleName"] == "vidpipe-dev-github-deploy"


def test_oidc_provider_is_created_for_github_with_the_sts_audience(deploy_access):
    deploy_access.resource_count_is("AWS::IAM::OIDCProvider", 1)
    deploy_access.has_resource_properties(
        "AWS::IAM::OIDCProvider",
        {
            "Url": f"https://{OIDC}",
            "ClientIdList": ["sts.amazonaws.com"],
        },
    )
    deploy_access.resource_count_is("AWS::Lambda::Function", 0)  # native resource, no custom-resource Lambda


def test_permissions_are_the_bootstrap_roles_and_describe_cluster_only(synth):
    template = synth.templates[synth.platform.deploy_access.stack_name]
    assert not deploy_role(template).get("ManagedPolicyArns")
    (policy,) = resources(template, "AWS::IAM::Policy").values()
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert set(statements) == {"AssumeCdkBootstrapRoles", "CheckCluster"}
    assume = statements["AssumeCdkBootstrapRoles"]
    assert assume["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    names = sorted(json.dumps(r).split(":role/cdk-hnb659fds-")[1].split("-role-")[0] for r in assume["Resource"])
    assert names == ["deploy", "file-publishing", "image-publishing", "lookup"]
    assert all("*" not in json.dumps(r) for r in assume["Resource"])
    describe = statements["CheckCluster"]
    assert describe["Action"] == "eks:DescribeCluster"
    assert json.dumps(describe["Resource"]).endswith(':cluster/vidpipe-dev"]]}')


def test_outputs_name_the_role_and_the_trusted_subject(synth):
    outputs = synth.templates[synth.platform.deploy_access.stack_name]["Outputs"]
    assert {"DeployRoleArn", "TrustedSubject"} <= set(outputs)
    assert outputs["TrustedSubject"]["Value"] == f"repo:{TEST_GITHUB_REPOSITORY}:environment:production"
    assert not any("Export" in o for o in outputs.values())


def test_existing_oidc_provider_is_imported_not_created(tmp_path_factory, clean_env):
    arn = "arn:aws:iam::000000000000:oidc-provider/token.actions.githubusercontent.com"
    platform, outdir = build(
        tmp_path_factory, **{"vidpipe:githubOidcProviderArn": arn, "vidpipe:githubEnvironment": "aws-prod"}
    )
    template = json.loads((outdir / f"{platform.deploy_access.artifact_id}.template.json").read_text())
    assert not resources(template, "AWS::IAM::OIDCProvider")
    (statement,) = deploy_role(template)["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Federated": arn}
    assert (
        statement["Condition"]["StringEquals"][f"{OIDC}:sub"] == f"repo:{TEST_GITHUB_REPOSITORY}:environment:aws-prod"
    )


def test_stack_absent_without_a_repository(tmp_path_factory, clean_env):
    # The platform deploy (`cdk deploy --all` in the workflow) never includes, nor changes, its own role.
    context_without = {"vidpipe:githubRepository": ""}
    platform, outdir = build(tmp_path_factory, **context_without)
    assert platform.deploy_access is None
    assert not list(outdir.glob("*deploy-access*.template.json"))
