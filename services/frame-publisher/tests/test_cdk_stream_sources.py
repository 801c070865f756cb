"""Camera URLs never reach CloudFormation: a stream names a Secrets Manager secret (its publisher gets a
Pod Identity role that may read exactly that secret) or a Kubernetes Secret the user creates."""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.cdk_support import SECRET_ARN

pytestmark = pytest.mark.infra

URL = re.compile(r"(rtsps?|rtmp|udp|tcp)://", re.IGNORECASE)


def test_no_stream_url_in_any_template(synth, with_streams):
    templates, _ = with_streams
    for name, text in [*((n, json.dumps(t)) for n, t in synth.templates.items()), *templates.items()]:
        assert not URL.search(text), f"a source URL in the {name} template"


def test_publishers_reference_their_secret(with_streams):
    templates, platform = with_streams
    compute = templates[platform.compute.stack_name]
    assert "publisher-lobby" in compute and "publisher-yard" in compute
    # lobby: the URL from the Kubernetes Secret vidpipe-stream-lobby, key source, mounted as a file
    assert (
        '{\\"name\\":\\"source\\",\\"secret\\":{\\"defaultMode\\":288,\\"items\\":'
        '[{\\"key\\":\\"source\\",\\"path\\":\\"url\\"}],\\"optional\\":false,'
        '\\"secretName\\":\\"vidpipe-stream-lobby\\"}}'
    ) in compute
    assert '\\"PUBLISHER_SOURCE_FILE\\":\\"/etc/vidpipe/source/url\\"' in compute
    assert "secretKeyRef" not in compute
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
            if any(a.startswith("secretsmanager:") for a in actions) and "ApiToken" not in json.dumps(statement):
                readers.append((logical_id, actions, statement["Resource"]))
    assert len(readers) == 1, readers
    logical_id, actions, resource = readers[0]
    assert "framepublisheryard" in logical_id.lower()
    assert actions == ["secretsmanager:GetSecretValue"] and resource == SECRET_ARN
    associations = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::EKS::PodIdentityAssociation"
    ]
    assert "frame-publisher-yard" in {a["ServiceAccount"] for a in associations}
