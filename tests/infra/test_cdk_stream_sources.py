"""Camera URLs never reach CloudFormation: a stream names a Secrets Manager secret (its publisher gets a
Pod Identity role that may read exactly that secret) or a Kubernetes Secret the user creates."""

from __future__ import annotations

import json
import re

import pytest
from cdk_support import session_context

pytestmark = pytest.mark.infra

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vidpipe/cameras/yard-AbC123"
URL = re.compile(r"(rtsps?|rtmp|udp|tcp)://", re.IGNORECASE)


@pytest.fixture(scope="module")
def with_streams(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    streams = [
        {"id": "lobby", "targetFps": 5},
        {"id": "yard", "sourceSecretArn": SECRET_ARN, "port": 8554, "targetFps": 2},
    ]
    outdir = tmp_path_factory.mktemp("with-streams")
    app = cdk.App(context=session_context(tmp_path_factory, **{"vidpipe:streams": streams}), outdir=str(outdir))
    platform = build_platform(app)
    app.synth()  # cdk-nag included: the new role and policy raise nothing unacknowledged
    return {
        stack.stack_name: (outdir / f"{stack.artifact_id}.template.json").read_text() for stack in platform.stacks
    }, platform


def test_no_stream_url_in_any_template(synth, with_streams):
    templates, _ = with_streams
    for name, text in [*((n, json.dumps(t)) for n, t in synth.templates.items()), *templates.items()]:
        assert not URL.search(text), f"a source URL in the {name} template"


def test_publishers_reference_their_secret(with_streams):
    templates, platform = with_streams
    compute = templates[platform.compute.stack_name]
    assert "publisher-lobby" in compute and "publisher-yard" in compute
    # lobby: PUBLISHER_SOURCE from the Kubernetes Secret vidpipe-stream-lobby, key source
    assert (
        '{\\"name\\":\\"PUBLISHER_SOURCE\\",\\"valueFrom\\":{\\"secretKeyRef\\":'
        '{\\"key\\":\\"source\\",\\"name\\":\\"vidpipe-stream-lobby\\"}}}'
    ) in compute
    # yard: the ARN in its ConfigMap, its own ServiceAccount
    assert f'\\"PUBLISHER_SOURCE_SECRET_ARN\\":\\"{SECRET_ARN}\\"' in compute
    assert '\\"serviceAccountName\\":\\"frame-publisher-yard\\"' in compute
    assert '\\"serviceAccountName\\":\\"frame-publisher\\"' in compute


def test_only_the_streams_own_role_reads_exactly_its_secret(with_streams):
    templates, platform = with_streams
    template = json.loads(templates[platform.compute.stack_name])
    readers = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("secretsmanager:") for a in actions):
                readers.append((logical_id, actions, statement["Resource"]))
    assert len(readers) == 1, readers
    logical_id, actions, resource = readers[0]
    assert "framepublisheryard" in logical_id.lower()
    assert actions == ["secretsmanager:GetSecretValue"] and resource == SECRET_ARN
    associations = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::EKS::PodIdentityAssociation"
    ]
    assert "frame-publisher-yard" in {a["ServiceAccount"] for a in associations}
