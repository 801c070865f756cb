"""Refactoring guard: the synthesized templates, normalized, must match the stored snapshot.

An intended change: `UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/infra -k snapshot`, then
review the diff of tests/infra/snapshots/ like code. Asset hashes and local paths are normalized;
the embedded Kubernetes manifests and the alert rules are replaced by placeholders (they have their own tests).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path

import pytest

from tests.infra.cdk_support import ROOT

pytestmark = pytest.mark.infra

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def normalize(template: dict) -> str:
    template = json.loads(json.dumps(template))
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource["Type"] == "Custom::AWSCDK-EKS-KubernetesResource" and "cdk8s" in json.dumps(props.get("Manifest")):
            props["Manifest"] = "<cdk8s chart: see tests/infra/test_cdk_workloads.py and cdk8s_app tests>"
        if resource["Type"] == "AWS::APS::RuleGroupsNamespace":
            # The committed rules file, as is: its owners change it without a template review.
            props["Data"] = "<alert rules file: see tests/infra/test_cdk_observability.py>"
    text = json.dumps(template, indent=1, sort_keys=True)
    text = _HASH.sub("<asset-hash>", text)
    return text.replace(str(ROOT), "<root>") + "\n"


def test_templates_match_snapshot(synth):
    update = os.environ.get("UPDATE_SNAPSHOTS") == "1"
    SNAPSHOTS.mkdir(exist_ok=True)
    stale = []
    for name, template in sorted(synth.templates.items()):
        path = SNAPSHOTS / f"{name}.json"
        actual = normalize(template)
        if update or not path.exists():
            if not update and os.environ.get("CI"):
                pytest.fail(f"{path.relative_to(ROOT)} is missing: run with UPDATE_SNAPSHOTS=1 and commit it")
            path.write_text(actual)
            continue
        expected = path.read_text()
        if actual != expected:
            diff = "".join(
                list(
                    difflib.unified_diff(
                        expected.splitlines(True), actual.splitlines(True), f"snapshot/{name}", f"synth/{name}", n=2
                    )
                )[:80]
            )
            stale.append(diff)
    assert not stale, "templates differ from tests/infra/snapshots (UPDATE_SNAPSHOTS=1 to accept):\n" + "\n".join(stale)
