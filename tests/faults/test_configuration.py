"""A missing or malformed variable stops each service at start-up with a message naming it."""

import subprocess
import sys

import pytest

from tools.harness.processes import service_env

pytestmark = pytest.mark.faults

VALID = {
    "frame_publisher": {"PUBLISHER_SOURCE": "video.mp4", "KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    "consumer_service": {
        "CONSUMER_INFERENCE_URL": "http://127.0.0.1:1",
        "CONSUMER_ARCHIVE_URI": "/tmp/a",
        "KAFKA_BOOTSTRAP": "127.0.0.1:1",
    },
    "inference_service": {"INFERENCE_MODEL_URI": "model.onnx"},
}

CASES = [
    ("frame_publisher", "PUBLISHER_SOURCE", None, "PUBLISHER_SOURCE: is required"),
    ("frame_publisher", "KAFKA_BOOTSTRAP", None, "KAFKA_BOOTSTRAP: is required"),
    ("frame_publisher", "KAFKA_BOOTSTRAP", "no-port-here", "KAFKA_BOOTSTRAP"),
    ("frame_publisher", "PUBLISHER_TARGET_FPS", "fast", "PUBLISHER_TARGET_FPS"),
    ("frame_publisher", "PUBLISHER_RESIZE", "big", "PUBLISHER_RESIZE"),
    ("frame_publisher", "KAFKA_AUTH", "kerberos", "KAFKA_AUTH"),
    ("consumer_service", "CONSUMER_INFERENCE_URL", None, "CONSUMER_INFERENCE_URL: is required"),
    ("consumer_service", "CONSUMER_INFERENCE_URL", "not a url", "CONSUMER_INFERENCE_URL"),
    ("consumer_service", "CONSUMER_ARCHIVE_URI", None, "CONSUMER_ARCHIVE_URI: is required"),
    ("consumer_service", "CONSUMER_BATCH_MAX_FRAMES", "0", "CONSUMER_BATCH_MAX_FRAMES"),
    ("consumer_service", "TOPICS_PARTITIONS", "many", "TOPICS_PARTITIONS"),
    ("inference_service", "INFERENCE_MODEL_URI", None, "INFERENCE_MODEL_URI: is required"),
    ("inference_service", "INFERENCE_PORT", "70000", "INFERENCE_PORT"),
    ("inference_service", "INFERENCE_DECODER", "ssd", "INFERENCE_DECODER"),
    ("inference_service", "INFERENCE_MAX_QUEUE", "2", "INFERENCE_MAX_QUEUE must be at least"),
]


@pytest.mark.parametrize("module, variable, value, message", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_bad_configuration_is_named_at_start_up(module, variable, value, message):
    env = service_env(**VALID[module])
    for name in list(env):
        if (
            name.startswith(("KAFKA_", "TOPICS_", "PUBLISHER_", "CONSUMER_", "INFERENCE_"))
            and name not in VALID[module]
        ):
            env.pop(name)
    if value is None:
        env.pop(variable, None)
    else:
        env[variable] = value
    result = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
