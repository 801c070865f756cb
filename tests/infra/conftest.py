"""One synthesized CDK app per test session (jsii start-up and a first synth cost seconds).

The app gets cdk.json's context (the CLI would add it; a bare cdk.App does not), the values a deploying
user passes with -c (a test admin principal and GitHub repository, so the deploy-access stack is
synthesized too) and `aws:cdk:disable-asset-staging`, so nothing large is copied; it writes into a
temporary folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cdk_support import ANALYTICS, PRIVACY_CONTEXT, STREAMS, session_context


@dataclass
class Synth:
    platform: Any
    assembly_dir: Path
    templates: dict[str, dict]  # stack name -> template JSON

    def template(self, stack: Any):
        from aws_cdk.assertions import Template

        return Template.from_json(self.templates[stack.stack_name])

    def all_outputs(self) -> dict[str, dict]:
        return {key: value for t in self.templates.values() for key, value in t.get("Outputs", {}).items()}


@pytest.fixture(scope="session")
def clean_env():
    """No deploying account: the stacks synthesize environment-agnostic, as in `make synth`."""
    saved = {k: os.environ.pop(k) for k in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION") if k in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def synth(tmp_path_factory, clean_env) -> Synth:
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(context=session_context(tmp_path_factory), outdir=str(outdir))
    platform = build_platform(app)
    app.synth()  # raises when cdk-nag finds anything unacknowledged
    templates = {
        stack.stack_name: json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
        for stack in platform.stacks
    }
    return Synth(platform=platform, assembly_dir=outdir, templates=templates)


@pytest.fixture(scope="session")
def with_streams(tmp_path_factory, clean_env) -> tuple[dict[str, str], Any]:
    """The app with two streams and an analytics section: {stack name: template text}, platform."""
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    context = session_context(tmp_path_factory, **{"vidpipe:streams": STREAMS, "vidpipe:analytics": ANALYTICS})
    outdir = tmp_path_factory.mktemp("with-streams")
    app = cdk.App(context=context, outdir=str(outdir))
    platform = build_platform(app)
    app.synth()  # cdk-nag included: the new role and policy raise nothing unacknowledged
    return {
        stack.stack_name: (outdir / f"{stack.artifact_id}.template.json").read_text() for stack in platform.stacks
    }, platform


@pytest.fixture(scope="session")
def privacy(tmp_path_factory, clean_env) -> Synth:
    """The app as a deployment under a 72-hour footage rule configures it: 3-day frames and results, 72-hour
    headers-only dead letters, an S3 interface endpoint, an audit trail of archive reads (cdk-nag included)."""
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    outdir = tmp_path_factory.mktemp("privacy")
    app = cdk.App(context=session_context(tmp_path_factory, **PRIVACY_CONTEXT), outdir=str(outdir))
    platform = build_platform(app)
    app.synth()
    templates = {
        stack.stack_name: json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
        for stack in platform.stacks
    }
    return Synth(platform=platform, assembly_dir=outdir, templates=templates)


@pytest.fixture(scope="session")
def network(synth):
    return synth.template(synth.platform.network)


@pytest.fixture(scope="session")
def data(synth):
    return synth.template(synth.platform.data)


@pytest.fixture(scope="session")
def compute(synth):
    return synth.template(synth.platform.compute)


@pytest.fixture(scope="session")
def deploy_access(synth):
    return synth.template(synth.platform.deploy_access)
