"""The start-up accuracy gate: a pod that finds no bf16 verdict for its model measures bf16 against f32 on the
calibration clip before it reports ready, keeps the verdict per (model sha256, CPU, runtime) and honours it;
a CPU without native bf16 serves f32 and says so; a failed gate serves f32. The CPU check is the only test
double: the gate code, the model and the clip are the real ones."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from inference_service import accuracy_gate, startup_gate
from inference_service import model as model_module
from inference_service.calibration import CalibrationError, measure
from inference_service.model import load_model
from inference_service.settings import InferenceSettings
from inference_service.startup_gate import cache_key, gate_for
from tests.helpers import started_client

pytestmark = pytest.mark.model

FRAMES = 16  # enough to run every step; the image's default is the whole clip


@pytest.fixture
def fresh_model(tmp_path, default_model):
    """The default model alone in a folder: no verdict lies beside it."""
    path = tmp_path / "models" / default_model.name
    path.parent.mkdir()
    shutil.copyfile(default_model, path)
    return path


@pytest.fixture
def gate_settings(tmp_path, fresh_model, sample_video):
    def make(**overrides) -> InferenceSettings:
        values = {
            "model_uri": str(fresh_model),
            "backend": "openvino",
            "gate_clip": str(sample_video),
            "gate_frames": FRAMES,
            "gate_cache_uri": str(tmp_path / "verdicts"),
            "model_cache_dir": str(tmp_path / "cache"),
        }
        return InferenceSettings(**(values | overrides))

    return make


def _cached(tmp_path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "verdicts").rglob("*.json"))]


def test_a_cpu_without_bf16_serves_f32_says_why_and_measures_nothing(gate_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "bf16_flags", lambda: [])
    settings = gate_settings()
    loaded = load_model(settings, startup_gate=gate_for(settings))
    assert loaded.runtime["precision"] == "f32"
    assert "no AMX-BF16 or AVX512-BF16" in loaded.runtime["precision_reason"]
    assert loaded.runtime["accuracy_gate"]["source"] == "none"
    assert _cached(tmp_path) == []


def test_the_gate_runs_at_start_up_is_cached_per_model_and_cpu_and_honoured(gate_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "bf16_flags", lambda: ["amx_bf16"])
    settings = gate_settings()
    first = load_model(settings, startup_gate=gate_for(settings))
    gate = first.runtime["accuracy_gate"]
    assert gate["source"] == "startup" and gate["frames"] == FRAMES and gate["video"] == "bikes.mp4"
    (report,) = _cached(tmp_path)
    assert report["model_sha256"] == model_module.sha256_file(settings.model_uri)
    assert report["cache_key"].startswith(report["model_sha256"] + "/")
    # Honoured as measured: bf16 asked only where it passed (on a CPU without real bf16 OpenVINO computes f32,
    # which the verdict records, and a verdict for f32 allows nothing).
    allowed = report["precision"] == "bf16" and report["f1"] >= accuracy_gate.MIN_F1
    assert gate["bf16_allowed"] is allowed
    assert ("passed the gate" in first.runtime["precision_reason"]) is allowed

    # The next start on this kind of CPU reads the verdict instead of measuring.
    def no_measurement(*args, **kwargs):
        raise AssertionError("measured again although a verdict was cached")

    monkeypatch.setattr(startup_gate, "_measure", no_measurement)
    second = load_model(settings, startup_gate=gate_for(settings))
    assert second.runtime["accuracy_gate"]["source"] == "cache"
    assert second.runtime["accuracy_gate"]["bf16_allowed"] is allowed

    # A passing verdict in the cache is served in bf16 (the precision asked of the runtime).
    cached = tmp_path / "verdicts" / report["cache_key"]
    cached.write_text(json.dumps({**report, "precision": "bf16", "f1": 0.99}))
    asked: list[str] = []
    real = model_module.OpenVinoBackend

    def recording(path, instances, threads, precision, input_scale=None):
        asked.append(precision)
        return real(path, instances, threads, precision, input_scale)

    monkeypatch.setattr(model_module, "OpenVinoBackend", recording)
    third = load_model(settings, startup_gate=gate_for(settings))
    assert asked == ["bf16"] and "bf16 passed the gate: F1 0.9900" in third.runtime["precision_reason"]


def test_a_failed_gate_serves_f32_and_its_verdict_is_kept(gate_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "bf16_flags", lambda: ["amx_bf16"])
    monkeypatch.setattr(accuracy_gate, "MIN_F1", 1.01)  # no F1 reaches it
    settings = gate_settings()
    loaded = load_model(settings, startup_gate=gate_for(settings))
    assert loaded.runtime["precision"] == "f32"
    assert loaded.runtime["accuracy_gate"]["bf16_allowed"] is False
    assert loaded.runtime["accuracy_gate"]["source"] == "startup"
    (report,) = _cached(tmp_path)
    assert report["passed"] is False


def test_without_a_clip_or_with_the_gate_off_the_pod_serves_f32_naming_the_variable(
    gate_settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(model_module, "bf16_flags", lambda: ["amx_bf16"])
    missing = gate_settings(gate_clip=str(tmp_path / "absent.mp4"))
    loaded = load_model(missing, startup_gate=gate_for(missing))
    assert loaded.runtime["precision"] == "f32" and "INFERENCE_GATE_CLIP" in loaded.runtime["precision_reason"]
    off = gate_settings(gate_at_startup=False)
    loaded = load_model(off, startup_gate=gate_for(off))
    assert "INFERENCE_GATE_AT_STARTUP" in loaded.runtime["precision_reason"]
    assert _cached(tmp_path) == [], "no measurement, nothing kept"


def test_a_verdict_beside_the_model_wins_over_the_start_up_gate(gate_settings, fresh_model, monkeypatch):
    monkeypatch.setattr(model_module, "bf16_flags", lambda: ["amx_bf16"])
    beside = {"model_sha256": model_module.sha256_file(fresh_model), "precision": "bf16", "f1": 0.5}
    fresh_model.with_name(fresh_model.name + accuracy_gate.SUFFIX).write_text(json.dumps(beside))
    monkeypatch.setattr(startup_gate, "_measure", lambda *args: pytest.fail("measured despite a verdict beside"))
    settings = gate_settings()
    loaded = load_model(settings, startup_gate=gate_for(settings))
    assert loaded.runtime["accuracy_gate"]["source"] == "beside_model"
    assert loaded.runtime["precision"] == "f32"


def test_the_service_is_ready_only_after_the_gate_and_reports_its_verdict(
    fresh_model, sample_video, tmp_path, monkeypatch
):
    monkeypatch.setattr(model_module, "bf16_flags", lambda: ["amx_bf16"])
    release = threading.Event()
    real = startup_gate._measure

    def held(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(startup_gate, "_measure", held)
    settings = InferenceSettings(
        model_uri=str(fresh_model),
        backend="openvino",
        gate_clip=str(sample_video),
        gate_frames=FRAMES,
        gate_cache_uri=str(tmp_path / "verdicts"),
        model_cache_dir=str(tmp_path / "cache"),
    )
    result: dict = {}
    starter = threading.Thread(target=lambda: result.update(client=started_client(settings)))
    starter.start()
    time.sleep(1.0)
    assert "client" not in result, "ready while the gate was still measuring"
    release.set()
    starter.join(60)
    client = result["client"]
    try:
        assert client.ops.get("/readyz").status_code == 200
        gate = client.get("/v1/model").json()["runtime"]["accuracy_gate"]
        assert gate["source"] == "startup"
        metrics = client.ops.get("/metrics").text
        assert 'inference_accuracy_gate_f1{allowed="' in metrics and 'source="startup"' in metrics
    finally:
        client.__exit__(None, None, None)


def test_the_measurement_refuses_an_unreadable_clip(default_model, tmp_path):
    clip = tmp_path / "broken.mp4"
    clip.write_bytes(b"not a video")
    settings = InferenceSettings(model_uri=str(default_model), backend="openvino")
    reference = load_model(settings.model_copy(update={"precision": model_module.PrecisionChoice.F32}))
    with pytest.raises(CalibrationError, match="broken.mp4"):
        measure(reference, reference, clip, 4)


def test_cache_keys_name_the_model_the_cpu_and_the_runtime():
    key = cache_key(
        "ab" * 32, "Intel(R) Xeon(R) Platinum 8488C", ["avx512_bf16", "amx_bf16"], "openvino-2026.4.1", "bf16"
    )
    assert key == f"{'ab' * 32}/intel-r-xeon-r-platinum-8488c+amx_bf16+avx512_bf16/openvino-2026.4.1-bf16.json"
    assert cache_key("cd" * 32, "", [], "openvino-x", "bf16").split("/")[1] == "unknown-cpu+none"
