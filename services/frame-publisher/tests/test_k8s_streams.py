"""Streams are configuration: one publisher Deployment per stream; the test source adds one live stream."""

from __future__ import annotations

import json
import re

import pytest

from tests.k8s.k8s_helpers import ROOT, containers, synthesize
from vidpipe_deploy.wiring import StreamSpec

pytestmark = pytest.mark.infra


def publishers(manifests) -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d
        for d in manifests.kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/name"] == "frame-publisher"
    }


def publisher_env(deployment: dict) -> dict[str, dict]:
    (container,) = containers(deployment)
    return {e["name"]: e for e in container.get("env", [])}


def test_one_publisher_per_configured_stream(manifests, wiring, settings):
    configured = [s["name"] for s in settings["streams"]]
    assert configured, "the committed settings configure streams"
    expected = {f"publisher-{name}" for name in [*configured, wiring.rtsp_test_source.stream_name]}
    assert set(publishers(manifests)) == expected
    for stream in wiring.all_streams:
        deployment = manifests.get("Deployment", f"publisher-{stream.name}")
        assert deployment["spec"]["replicas"] == 1, "two publishers of one stream would duplicate frames"
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        config = manifests.config_map(f"publisher-{stream.name}")
        assert "PUBLISHER_SOURCE" not in config, "a camera URL never sits in a ConfigMap"
        assert config["PUBLISHER_STREAM_ID"] == stream.name
        assert float(config["PUBLISHER_TARGET_FPS"]) == stream.target_fps


def source_file(manifests, deployment: dict) -> tuple[dict, str]:
    """The Secret volume the camera URL comes from, and the file PUBLISHER_SOURCE_FILE names."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = manifests.config_map(deployment["metadata"]["name"])["PUBLISHER_SOURCE_FILE"]
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (item,) = volume["secret"]["items"]
    assert path == f"{mount['mountPath']}/{item['path']}"
    return volume["secret"], item["key"]


def test_publishers_read_the_camera_url_from_their_secret_as_a_file(manifests, wiring):
    """A mounted file, not a variable (checkov CKV_K8S_35): the URL is in no process environment, no
    `kubectl describe`, no crash dump of the environment."""
    for stream in wiring.streams:
        deployment = manifests.get("Deployment", f"publisher-{stream.name}")
        assert "PUBLISHER_SOURCE" not in publisher_env(deployment)
        secret, key = source_file(manifests, deployment)
        assert (secret["secretName"], key) == (f"vidpipe-stream-{stream.name}", "source")
        # Required (a missing Secret stops the pod visibly); read-only for owner root and the pod's group.
        assert secret["optional"] is False and secret["defaultMode"] == 0o440
        assert deployment["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001
    assert not manifests.kind("Secret"), "the charts never create the Secret: the user does, with the URL"
    for deployment in manifests.kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert not any("valueFrom" in e for e in container.get("env", [])), "no secret as a variable"


def test_secret_name_and_key_are_configurable_and_secrets_manager_is_an_alternative(wiring):
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vidpipe/gate-AbC123"
    streams = [
        {"name": "gate", "secretName": "cameras.gate", "secretKey": "url", "port": 8554},
        {"name": "yard", "sourceSecretArn": arn, "port": 322},
    ]
    # Other streams: the committed analytics section (for lobby) goes with the committed ones.
    update = {"streams": [StreamSpec.model_validate(s) for s in streams], "analytics": {}}
    manifests = synthesize(wiring.model_copy(update=update))
    secret, key = source_file(manifests, manifests.get("Deployment", "publisher-gate"))
    assert (secret["secretName"], key) == ("cameras.gate", "url")
    yard = manifests.get("Deployment", "publisher-yard")
    assert "PUBLISHER_SOURCE" not in publisher_env(yard), "the publisher reads Secrets Manager itself"
    assert manifests.config_map("publisher-yard")["PUBLISHER_SOURCE_SECRET_ARN"] == arn
    assert "PUBLISHER_SOURCE_FILE" not in manifests.config_map("publisher-yard")
    assert not [v for v in yard["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    yard_ports = {
        p["port"]
        for rule in manifests.get("NetworkPolicy", "publisher-yard")["spec"]["egress"]
        for p in rule.get("ports", [])
    }
    assert {322, 443} <= yard_ports, "the camera's port, and HTTPS for Secrets Manager"
    gate_ports = {
        p["port"]
        for rule in manifests.get("NetworkPolicy", "publisher-gate")["spec"]["egress"]
        for p in rule.get("ports", [])
    }
    assert 8554 in gate_ports and 443 not in gate_ports


URL = re.compile(r"(rtsps?|rtmp|https?|udp|tcp)://", re.IGNORECASE)


def test_no_camera_url_in_any_manifest(settings):
    """Default settings: no URL-shaped source anywhere (with or without credentials); with the test source on,
    the only rtsp:// text is its fixed in-cluster URL, credential-free and in no ConfigMap."""
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS
    from vidpipe_deploy.wiring import PlatformWiring

    default = synthesize(PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings))
    assert not re.search(r"rtsps?://|rtmp://|udp://|tcp://", json.dumps(default.objects))
    with_test = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings, rtsp_test_source={"enabled": True})
    manifests = synthesize(with_test)
    found = set(re.findall(r"rtsps?://[^\s\"']*", json.dumps(manifests.objects)))
    assert found == {with_test.test_source_url, f"rtsp://127.0.0.1:8554/{with_test.rtsp_test_source.path}"}
    assert all("@" not in url and "?" not in url for url in found)
    for config in manifests.kind("ConfigMap"):
        assert not any(URL.search(v) for k, v in config["data"].items() if k.startswith("PUBLISHER_")), config


def test_the_standalone_synth_writes_no_camera_url(tmp_path):
    """The files `kubectl apply -f dist/` reads, as `make k8s` writes them (committed settings, sample outputs)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CDK8S_OUTDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "cdk8s_app.main"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    files = sorted(tmp_path.glob("*.k8s.yaml"))
    assert files
    for path in files:
        text = path.read_text()
        assert not re.search(r"rtsps?://|rtmp://|udp://|tcp://", text), path
    workloads = next(p for p in files if "workloads" in p.name).read_text()
    assert "secretKeyRef:" not in workloads
    assert workloads.count("secretName: vidpipe-stream-") == 2 and "secretName: vidpipe-stream-lobby" in workloads


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "cam", "source": "rtsp://admin:s3cret@cam/live"},
        {"id": "cam", "source": "rtsp://cam.example.internal/live"},
    ],
)
def test_a_source_url_in_the_settings_is_refused_without_repeating_it(entry):
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS
    from vidpipe_deploy.wiring import PlatformWiring, WiringError

    with pytest.raises(WiringError) as caught:
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {"streams": [entry]})
    message = str(caught.value)
    assert "vidpipe-stream-cam" in message and "rtsp://" not in message and "s3cret" not in message


def test_adding_a_camera_is_a_config_change(wiring):
    extra = {"id": "gate", "targetFps": 2, "port": 322}
    bigger = wiring.model_validate({**wiring.model_dump(), "streams": [*wiring.model_dump()["streams"], extra]})
    manifests = synthesize(bigger)
    assert "publisher-gate" in publishers(manifests)
    assert manifests.config_map("publisher-gate")["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "rtsp_transport;tcp"
    assert manifests.get("NetworkPolicy", "publisher-gate")


def test_test_source_serves_rtsp_to_the_generated_stream(manifests, wiring):
    source = manifests.get("Deployment", "rtsp-test-source")
    server, loop = containers(source)
    assert server["ports"] == [{"containerPort": 8554, "name": "rtsp", "protocol": "TCP"}]
    assert loop["command"] == ["ffmpeg"] and loop["args"][-1] == f"rtsp://127.0.0.1:8554/{wiring.rtsp_test_source.path}"
    service = manifests.get("Service", "rtsp-test-source")
    assert service["spec"]["ports"][0]["port"] == 8554
    env = publisher_env(manifests.get("Deployment", "publisher-test-source"))
    assert env["PUBLISHER_SOURCE"]["value"] == wiring.test_source_url, "fixed, in-cluster, no credentials"


def test_test_source_is_off_by_default(settings):
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS
    from vidpipe_deploy.wiring import PlatformWiring

    default = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings)
    assert not default.rtsp_test_source.enabled
    assert all(s.name != "test-source" for s in default.all_streams)


@pytest.mark.parametrize(
    "fields",
    [
        {"port": 0},
        {"secretName": "Not_A_Name"},
        {"secretKey": "a b"},
        {"sourceSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:nosuffix"},
    ],
)
def test_stream_settings_are_checked(fields):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        StreamSpec.model_validate({"name": "cam", **fields})
