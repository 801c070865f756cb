"""Cameras at runtime: one publisher Deployment in registry mode whatever the number of cameras, the camera
Secret mounted as files, egress to the cameras' ports; the settings' streams are the registry seed."""

from __future__ import annotations

import json
import re

import pytest

from tests.k8s.k8s_helpers import ROOT, SAMPLE_OUTPUTS, containers, env_of, synthesize
from vidpipe_deploy.wiring import PlatformWiring, WiringError

pytestmark = pytest.mark.infra

NAME = "frame-publisher"


def publishers(manifests) -> list[dict]:
    return [
        d
        for d in manifests.kind("Deployment")
        if d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == NAME
    ]


def with_streams(wiring: PlatformWiring, count: int) -> PlatformWiring:
    streams = [{"id": f"cam-{i:03d}", "source": f"secret:cam-{i:03d}"} for i in range(count)]
    return wiring.model_validate({**wiring.model_dump(), "streams": streams})


@pytest.mark.parametrize("count", [0, 1, 250])
def test_one_publisher_deployment_whatever_the_number_of_cameras(wiring, count):
    manifests = synthesize(with_streams(wiring, count))
    (deployment,) = publishers(manifests)
    assert deployment["metadata"]["name"] == NAME
    assert "replicas" not in deployment["spec"], "KEDA's HPA owns the count"
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate", "a group member joins before the old one leaves"
    assert not [c for c in manifests.kind("ConfigMap") if c["metadata"]["name"].startswith("publisher-")], (
        "no per-camera ConfigMap"
    )
    assert len([p for p in manifests.kind("NetworkPolicy") if "publisher" in p["metadata"]["name"]]) == 2, (
        "its own policy and its scrape policy, whatever the cameras"
    )


def test_publishers_run_in_registry_mode_in_their_group(manifests, wiring, monkeypatch):
    from frame_publisher.settings import Mode, PublisherSettings
    from vidpipe.topics import TopicSettings

    deployment = manifests.get("Deployment", NAME)
    env = env_of(manifests, deployment)
    assert env["PUBLISHER_MODE"] == "registry"
    assert env["PUBLISHER_GROUP_ID"] == wiring.topics.publisher_group == "vidpipe-publishers"
    assert env["PUBLISHER_SOURCES_DIR"] == "/var/run/vidpipe/sources"
    assert env["TOPICS_STREAMS"] == "video.streams.v1" and env["TOPICS_STREAMS_STATUS"] == "video.streams.status.v1"
    assert env["TOPICS_STREAMS_PARTITIONS"] == "24"
    assert not {
        "PUBLISHER_SOURCE",
        "PUBLISHER_SOURCE_FILE",
        "PUBLISHER_SOURCE_SECRET_ARN",
        "PUBLISHER_STREAM_ID",
    } & set(env), "the registry defines the streams"
    for key in list(__import__("os").environ):
        if key.split("_")[0] in {"KAFKA", "TOPICS", "PUBLISHER"}:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = PublisherSettings()
    assert settings.mode == Mode.REGISTRY and settings.group_id == "vidpipe-publishers"
    assert TopicSettings().streams == "video.streams.v1"
    # A stopping pod flushes its streams' frames and leaves the group before the kubelet kills it.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= settings.flush_timeout_s + 5, (grace, settings.flush_timeout_s)
    # One pod lost never stops every camera: a disruption budget, pods spread across zones.
    assert manifests.get("PodDisruptionBudget", NAME)["spec"]["maxUnavailable"] == 1
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert "topology.kubernetes.io/zone" in {c["topologyKey"] for c in spread}


def test_the_camera_secret_is_mounted_read_only_as_files_and_optional(manifests):
    """`secret:<key>` is the file /var/run/vidpipe/sources/<key>: every key of vidpipe-camera-sources, 0440 for
    the pod's group, updated in place by the kubelet (no items, no subPath), optional so the pods start before
    the Secret exists. Never a variable (checkov CKV_K8S_35)."""
    deployment = manifests.get("Deployment", NAME)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/vidpipe/sources"]
    assert mount["readOnly"] is True and "subPath" not in mount
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"] == {"secretName": "vidpipe-camera-sources", "defaultMode": 0o440, "optional": True}
    assert pod["securityContext"]["fsGroup"] == 10001
    assert not manifests.kind("Secret"), "the charts never create the Secret: the user does, with the URLs"
    for workload in [*manifests.kind("Deployment"), *manifests.kind("Job")]:
        for c in workload["spec"]["template"]["spec"]["containers"]:
            assert not any("valueFrom" in e for e in c.get("env", [])), "no secret as a variable"


def test_the_resources_hold_the_streams_per_pod(manifests, wiring):
    (container,) = containers(manifests.get("Deployment", NAME))
    limits = container["resources"]["limits"]
    # 25 720p streams at 5 frames/s: 25 x 0.070 CPU-s/s measured (docs/STREAMS.md).
    assert float(limits["cpu"]) >= wiring.scaling.publisher_streams_per_pod * 0.070


URL = re.compile(r"(rtsps?|rtmp|https?|udp|tcp)://", re.IGNORECASE)


def test_no_camera_url_in_any_manifest(settings):
    """Default settings: no URL-shaped source anywhere; with the test source on, the only rtsp:// text is its
    fixed in-cluster URL (in the seed and the test source's own loop), credential-free."""
    default = synthesize(PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings))
    assert not re.search(r"rtsps?://|rtmp://|udp://|tcp://", json.dumps(default.objects))
    with_test = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings, rtsp_test_source={"enabled": True})
    manifests = synthesize(with_test)
    found = set(re.findall(r"rtsps?://[^\s\"'\\\\]*", json.dumps(manifests.objects)))
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
        assert not re.search(r"rtsps?://|rtmp://|udp://|tcp://", path.read_text()), path
    workloads = next(p for p in files if "workloads" in p.name).read_text()
    assert "secretKeyRef:" not in workloads
    assert workloads.count("secretName: vidpipe-camera-sources") == 1


@pytest.mark.parametrize(
    "entry",
    [
        {"id": "cam", "source": "rtsp://admin:s3cret@cam/live"},
        {"id": "cam", "source": "rtsp://cam.example.internal/live?token=s3cret"},
    ],
)
def test_a_source_with_credentials_in_the_settings_is_refused_without_repeating_it(entry):
    with pytest.raises(WiringError) as caught:
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, {"streams": [entry]})
    message = str(caught.value)
    assert "streams[cam].source" in message and "secret:<key>" in message
    assert "rtsp://" not in message and "s3cret" not in message and "admin" not in message


def test_the_cameras_ports_are_a_setting(wiring):
    ports = {
        p["port"]
        for rule in synthesize(wiring.model_validate({**wiring.model_dump(), "camera_ports": [322, 554]})).get(
            "NetworkPolicy", NAME
        )["spec"]["egress"]
        for p in rule.get("ports", [])
    }
    assert {322, 554} <= ports and 8554 in ports, "322 and 554 anywhere; 8554 to the test source's pods"
    with pytest.raises(ValueError):
        wiring.model_validate({**wiring.model_dump(), "camera_ports": [0]})


def test_test_source_serves_rtsp_to_the_seeded_stream(manifests, wiring):
    source = manifests.get("Deployment", "rtsp-test-source")
    server, loop = containers(source)
    assert server["ports"] == [{"containerPort": 8554, "name": "rtsp", "protocol": "TCP"}]
    assert loop["command"] == ["ffmpeg"] and loop["args"][-1] == f"rtsp://127.0.0.1:8554/{wiring.rtsp_test_source.path}"
    service = manifests.get("Service", "rtsp-test-source")
    assert service["spec"]["ports"][0]["port"] == 8554
    (test,) = [s for s in wiring.seed if s.id == "test-source"]
    assert test.source == wiring.test_source_url == "rtsp://rtsp-test-source.vidpipe.svc:8554/test"


def test_test_source_is_off_by_default(settings):
    default = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings)
    assert not default.rtsp_test_source.enabled
    assert [s.id for s in default.seed] == ["lobby", "loading-dock"]
