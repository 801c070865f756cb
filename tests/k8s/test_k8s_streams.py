"""Streams are configuration: one publisher Deployment per stream; the test source adds one live stream."""
from __future__ import annotations

import pytest

from tests.k8s.k8s_helpers import containers, synthesize

pytestmark = pytest.mark.infra


def publishers(manifests) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in manifests.kind("Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/name"] == "frame-publisher"}


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
        assert config["PUBLISHER_SOURCE"] == stream.source
        assert config["PUBLISHER_STREAM_ID"] == stream.name
        assert float(config["PUBLISHER_TARGET_FPS"]) == stream.target_fps


def test_adding_a_camera_is_a_config_change(wiring):
    extra = {"id": "gate", "source": "rtsps://camera-gate.example.internal/live", "targetFps": 2}
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
    assert manifests.config_map("publisher-test-source")["PUBLISHER_SOURCE"] == wiring.test_source_url


def test_test_source_is_off_by_default(settings):
    from cdk8s_app.wiring import PlatformWiring
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS

    default = PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings)
    assert not default.rtsp_test_source.enabled
    assert all(s.name != "test-source" for s in default.all_streams)


@pytest.mark.parametrize("source", ["/data/video.mp4", "webcam:0", "rtsp://", "udp://camera.example.internal"])
def test_streams_must_be_network_sources(source):
    from pydantic import ValidationError

    from cdk8s_app.wiring import StreamSpec

    with pytest.raises(ValidationError):
        StreamSpec(name="cam", source=source)
