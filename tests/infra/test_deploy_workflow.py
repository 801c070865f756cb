"""The deploy workflow cannot be driven from a fork, deploys only tested commits, and asks AWS for
credentials only after synth passed, in the GitHub environment the deploy role trusts."""

from __future__ import annotations

import pytest
import yaml

from tests.infra.cdk_support import ROOT, user_context

pytestmark = pytest.mark.infra

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


@pytest.fixture(scope="module")
def deploy() -> dict:
    return load("deploy.yml")


def test_triggers_are_pushes_to_main_and_manual_runs_only(deploy):
    assert set(deploy["on"]) == {"push", "workflow_dispatch"}
    assert deploy["on"]["push"] == {"branches": ["main"]}
    # Not even in a job condition: a workflow_run of a fork's pull request from a branch named main
    # would look like main.
    code = "\n".join(line.split("#")[0] for line in (WORKFLOWS / "deploy.yml").read_text().splitlines())
    for trigger in ("workflow_run", "pull_request", "repository_dispatch"):
        assert trigger not in code, trigger


def test_tests_run_first_through_ci(deploy):
    jobs = deploy["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["deploy"]["needs"] == "test"
    assert "workflow_call" in load("ci.yml")["on"]


def test_deploy_job_is_held_to_this_repository_main_and_environment(deploy):
    job = deploy["jobs"]["deploy"]
    condition = job["if"]
    assert "github.repository == vars.DEPLOY_REPOSITORY" in condition
    assert "vars.DEPLOY_REPOSITORY != ''" in condition
    assert "github.ref == 'refs/heads/main'" in condition
    # The environment the role's trust policy names (vidpipe:githubEnvironment, default in cdk_app/config.py).
    from cdk_app.config import load_config

    assert job["environment"] == load_config(user_context()).github_environment
    assert deploy["permissions"] == {"contents": "read"}  # no OIDC token outside the deploy job
    assert job["permissions"] == {"contents": "read", "id-token": "write"}


def test_credentials_only_after_install_and_synth(deploy):
    steps = deploy["jobs"]["deploy"]["steps"]
    runs = [s.get("run", "") for s in steps]
    credentials = next(
        i for i, s in enumerate(steps) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    )
    synth = next(i for i, r in enumerate(runs) if "make synth" in r)
    install = next(i for i, r in enumerate(runs) if "make venv" in r)
    assert install < synth < credentials
    deploy_step = next(i for i, r in enumerate(runs) if "cdk deploy" in r)
    assert deploy_step > credentials and "--app cdk.out" in runs[deploy_step]  # the assembly that passed the gates
    assert all("@" in s["uses"] and len(s["uses"].split("@")[1]) == 40 for s in steps if "uses" in s)  # pinned SHAs


def test_ci_does_not_deploy_or_request_credentials():
    ci = load("ci.yml")
    text = (WORKFLOWS / "ci.yml").read_text()
    assert "id-token" not in text and "configure-aws-credentials" not in text
    assert ci["permissions"] == {"contents": "read"}
