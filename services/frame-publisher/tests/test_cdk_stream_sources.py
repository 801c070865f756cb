"""Camera URLs never reach CloudFormation: the seed's sources are references (a key of the camera Secret the
user creates, or a Secrets Manager secret), and the publishers' one identity may read exactly the Secrets Manager
secrets the seed names (and vidpipe:cameraSecretArns)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.infra.cdk_support import SECRET_ARN, chart_objects, find

pytestmark = pytest.mark.infra

URL = re.compile(r"(rtsps?|rtmp|udp|tcp)://", re.IGNORECASE)


def test_no_stream_url_in_any_template(synth, with_streams):
    templates, _ = with_streams
    for name, text in [*((n, json.dumps(t)) for n, t in synth.templates.items()), *templates.items()]:
        assert not URL.search(text), f"a source URL in the {name} template"


def test_one_publisher_deployment_and_the_seed_by_reference(with_streams):
    templates, platform = with_streams
    objects = chart_objects(json.loads(templates[platform.compute.stack_name]))
    (publisher,) = [o for o in objects if o["kind"] == "Deployment" and "publisher" in o["metadata"]["name"]]
    assert publisher["metadata"]["name"] == "frame-publisher"
    pod = publisher["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "frame-publisher"
    assert {
        "name": "camera-sources",
        "secret": {"secretName": "vidpipe-camera-sources", "defaultMode": 288, "optional": True},
    } in pod["volumes"]
    (seed,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("stream-registry")]
    streams = {s["id"]: s for s in yaml.safe_load(seed["data"]["streams.yaml"])["streams"]}
    assert streams["lobby"]["source"] == "secret:lobby" and streams["yard"]["source"] == SECRET_ARN
    # The ARN reaches the publishers through the registry, not their environment.
    assert SECRET_ARN not in json.dumps(find(objects, "ConfigMap", "frame-publisher"))


def test_only_the_publishers_identity_reads_exactly_the_seeds_camera_secret(with_streams):
    templates, platform = with_streams
    template = json.loads(templates[platform.compute.stack_name])
    readers = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("secretsmanager:") for a in actions) and "ApiToken" not in json.dumps(statement):
                readers.append((logical_id, statement["Sid"], actions, statement["Resource"]))
    assert len(readers) == 1, readers
    logical_id, sid, actions, resource = readers[0]
    assert "framepublisher" in logical_id.lower() and sid == "ReadCameraSources"
    assert actions == ["secretsmanager:GetSecretValue"] and resource == SECRET_ARN
    associations = {
        r["Properties"]["ServiceAccount"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::EKS::PodIdentityAssociation"
    }
    assert not [a for a in associations if a.startswith("frame-publisher-")], "no identity per camera"
    # ...and HTTPS to the VPC's endpoints (Secrets Manager) opens for the publishers.
    policy = find(chart_objects(template), "NetworkPolicy", "frame-publisher")["spec"]
    assert any(p["port"] == 443 for rule in policy["egress"] for p in rule["ports"])


def test_without_a_secrets_manager_source_no_camera_secret_is_readable(synth):
    template = synth.templates[synth.platform.compute.stack_name]
    text = json.dumps(template)
    assert "ReadCameraSources" not in text
    policy = find(chart_objects(template), "NetworkPolicy", "frame-publisher")["spec"]
    assert not any(p["port"] == 443 for rule in policy["egress"] for p in rule["ports"])
