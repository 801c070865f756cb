"""Live sources: an unreachable RTSP camera is retried with growing backoff, a camera that comes
up is streamed, one that drops is reconnected, and SIGTERM flushes. A real RTSP server
(GStreamer, tools/rtsp/serve.py) runs on loopback."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.pipeline import ROOT, topic_env
from tests.helpers import read_all
from tools.harness.processes import free_port, publisher_process
from vidpipe.contract import parse_frame_headers

pytestmark = [pytest.mark.broker, pytest.mark.faults]

SYSTEM_PYTHON = "/usr/bin/python3"


def rtsp_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return (
        Path(SYSTEM_PYTHON).exists()
        and subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0
    )


@pytest.fixture(scope="module", autouse=True)
def require_rtsp():
    if not rtsp_available():
        message = "GStreamer RTSP server not installed: run `make rtsp-deps` (make test does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class RtspServer:
    def __init__(self, port: int):
        self.port = port
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(ROOT / "tools" / "rtsp" / "serve.py"), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert "serving" in self.process.stdout.readline()
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def reconnect_delays(log: str) -> list[float]:
    return [float(d) for d in re.findall(r"reconnecting in ([0-9.]+)s", log)]


def test_rtsp_camera_outages_are_retried_with_backoff_and_nothing_blocks(
    kafka_bootstrap, kafka_settings, topics, tmp_path
):
    port = free_port()
    camera = RtspServer(port)
    summary = tmp_path / "summary.json"
    publisher = publisher_process(
        kafka_bootstrap,
        f"rtsp://user:secret@127.0.0.1:{port}/live",
        tmp_path,
        ["--stream-id", "cam", "--summary-file", str(summary)],
        PUBLISHER_RECONNECT_INITIAL_S="0.2",
        PUBLISHER_RECONNECT_MAX_S="1.5",
        **topic_env(topics),
    ).start()
    try:
        time.sleep(4)  # nothing listens yet
        assert publisher.running, publisher.log_tail()
        delays = reconnect_delays(publisher.log_tail(100))
        assert len(delays) >= 3 and delays[:3] == sorted(delays[:3]) and max(delays) <= 1.5, delays
        assert "secret" not in publisher.log_tail(100), "camera credentials must never be logged"

        camera.start()  # the camera comes up: frames flow
        first = read_all(kafka_settings, topics.frames, expect=10, timeout_s=30)
        assert len(first) >= 10

        camera.stop()  # the camera drops: the publisher reconnects instead of exiting
        time.sleep(3)
        assert publisher.running and "lost rtsp://***@127.0.0.1" in publisher.log_tail(100)
        camera.start()
        time.sleep(4)
        assert publisher.stop() == 0, publisher.log_tail()
    finally:
        camera.stop()
        publisher.stop()
    import json

    result = json.loads(summary.read_text())
    assert result["frames_published"] == result["frames_delivered"] > len(first)
    frames = read_all(kafka_settings, topics.frames, expect=result["frames_published"], timeout_s=30)
    seqs = sorted(parse_frame_headers(f.headers()).seq for f in frames)
    assert seqs == list(range(result["frames_published"])), "sequence numbers continue across reconnects"
