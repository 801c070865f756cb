"""The int8 path end to end with the default model, on a few frames: `python -m tools.quantize` writes the
int8 model and its verdict beside the model; the service serves it only with a passed verdict for these
exact files, and refuses a failed verdict or a changed file with the reason."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inference_service.accuracy_gate import INT8_BIN, INT8_XML, MIN_F1_INT8, gate_uri
from inference_service.calibration import frames
from inference_service.model import ModelError, load_model
from inference_service.preprocess import InputBuffer, decode_and_resize
from inference_service.settings import InferenceSettings
from tools.paths import DEFAULT_MODEL, SAMPLE_VIDEO
from tools.quantize.__main__ import main as quantize
from vidpipe.storage import sha256_file

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    if not DEFAULT_MODEL.is_file() or not SAMPLE_VIDEO.is_file():
        pytest.skip("needs the default model and the sample video (make model sample)")
    model = shutil.copy(DEFAULT_MODEL, tmp_path_factory.mktemp("int8") / DEFAULT_MODEL.name)
    rc = quantize(["--model", str(model), "--calibration-frames", "16", "--frames", "12"])
    assert rc in (0, 1)  # passed or failed: either is a verdict
    return model


def _report(model) -> dict:
    return json.loads(open(gate_uri(str(model), "int8")).read())


def _pass(model) -> None:
    report = _report(model) | {"f1": 0.99, "passed": True}
    open(gate_uri(str(model), "int8"), "w").write(json.dumps(report))


def test_the_tool_writes_the_int8_model_and_a_verdict_naming_its_files(quantized, capsys):
    report = _report(quantized)
    assert report["precision"] == "int8" and report["frames"] == 12 and report["min_f1"] == MIN_F1_INT8
    assert report["model_sha256"] == sha256_file(quantized)
    assert report["int8_model_sha256"] == {
        "int8_xml": sha256_file(str(quantized) + INT8_XML),
        "int8_bin": sha256_file(str(quantized) + INT8_BIN),
    }
    assert quantize(["--model", str(quantized), "--if-needed"]) == 0  # up to date: nothing redone
    assert "already holds" in capsys.readouterr().err


def test_the_service_serves_int8_only_with_a_passed_verdict_for_these_files(quantized):
    settings = InferenceSettings(model_uri=str(quantized), precision="int8", instances=1)
    report = _report(quantized)
    if not report["passed"]:
        with pytest.raises(ModelError, match="int8 failed the gate"):
            load_model(settings)
    _pass(quantized)
    model = load_model(settings)
    assert model.runtime["precision"] == "int8" and model.runtime["accuracy_gate"]["int8_allowed"] is True
    assert model.labels and model.decoder.__class__.__name__ == "YoloDecoder"  # metadata kept in the IR

    # The int8 model detects what f32 detects on a frame with a car in it (frame 119 of bikes.mp4).
    f32 = load_model(InferenceSettings(model_uri=str(quantized), precision="f32", backend="openvino", instances=1))
    image = decode_and_resize(list(frames(SAMPLE_VIDEO, 120))[-1], model.input)
    tensor = InputBuffer(model.input, 1).fill([image]).copy()

    def labels(loaded) -> set[str]:
        found = loaded.decoder.decode(loaded.run(tensor), 0, image.width, image.height)["detections"]
        return {d["label"] for d in found}

    assert labels(f32) and labels(model) == labels(f32)
    assert not np.array_equal(model.run(tensor)["scores"], f32.run(tensor)["scores"])  # really another model

    with open(str(quantized) + INT8_BIN, "ab") as changed:
        changed.write(b"\0")
    with pytest.raises(ModelError, match="not the file its gate measured"):
        load_model(settings)
