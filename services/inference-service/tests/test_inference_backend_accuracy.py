"""The accuracy gate end to end on a few frames of the sample video with the default model: OpenVINO f32
against onnxruntime f32 agrees (the tool's own sanity check), and a report written beside the model is
what the service reads back at start-up."""

from __future__ import annotations

import json
import shutil

import pytest

from inference_service.accuracy_gate import read_verdict
from inference_service.cpu import bf16_flags
from tools.accuracy.__main__ import main
from tools.paths import DEFAULT_MODEL, SAMPLE_VIDEO
from vidpipe.storage import sha256_file

pytestmark = pytest.mark.model


@pytest.fixture
def model(tmp_path):
    if not DEFAULT_MODEL.is_file() or not SAMPLE_VIDEO.is_file():
        pytest.skip("needs the default model and the sample video (make model sample)")
    return shutil.copy(DEFAULT_MODEL, tmp_path / DEFAULT_MODEL.name)


def test_the_gate_runs_on_a_few_frames_and_writes_what_the_service_reads(model, tmp_path, capsys):
    rc = main(["--model", str(model), "--frames", "12", "--precision", "f32", "--reference-backend", "onnxruntime"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["frames"] == 12 and report["f1"] == 1.0
    assert report["score_diff_max"] < 1e-3 and report["model_sha256"] == sha256_file(model)

    out = tmp_path / "gate.json"
    report["f1"] = 0.99
    out.write_text(json.dumps(report))
    verdict = read_verdict(str(model), sha256_file(model), str(tmp_path))
    assert not verdict.allowed and "no gate file" in verdict.reason
    shutil.copy(out, str(model) + ".accuracy.json")
    verdict = read_verdict(str(model), sha256_file(model), str(tmp_path))
    assert not verdict.allowed and "not bf16" in verdict.reason  # an f32 report never allows bf16


def test_bf16_is_judged_only_where_the_cpu_computes_it(model, tmp_path, capsys):
    out = tmp_path / "bf16.json"
    rc = main(["--model", str(model), "--frames", "8", "--out", str(out)])
    report = json.loads(capsys.readouterr().out)
    if not bf16_flags():  # OpenVINO computes f32 here: comparing f32 with f32 would prove nothing
        assert rc == 3 and report["precision"] == "f32" and not out.exists()
    else:
        assert rc in (0, 1) and report["precision"] == "bf16" and json.loads(out.read_text())["f1"] == report["f1"]
