"""Runtimes behind one interface: the same models, fed the same way, on onnxruntime and on OpenVINO
(fixed-batch padding, one-image-per-run, per-image retry, several instances); the pod's CPU limit from
cgroup v1/v2; bf16 only on a bf16 CPU with a passed accuracy gate for this very model."""

from __future__ import annotations

import json
import threading
import time

import pytest
from test_inference_models import (
    BLACK,
    BLUE,
    RED,
    WHITE,
    fails_on_white_model,
    infer,
    infer_batch,
    mean_colour_model,
)

from inference_service import model as model_module
from inference_service.accuracy_gate import MIN_F1, MIN_F1_INT8, gate_uri, judge, read_verdict
from inference_service.batcher import DynamicBatcher
from inference_service.cpu import bf16_flags, cpu_limit
from inference_service.model import ModelError
from inference_service.settings import InferenceSettings
from vidpipe.storage import sha256_file

BACKENDS = ["onnxruntime", "openvino"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fixed_batch_padding_and_multiple_instances_on_each_backend(serve, tmp_path, backend):
    client = serve(
        mean_colour_model(tmp_path / "fixed10.onnx", batch=10),
        backend=backend,
        instances=2,
        max_batch_size=4,
        max_request_items=23,
    )
    runtime = client.get("/v1/model").json()["runtime"]
    assert (runtime["backend"], runtime["precision"], runtime["instances"]) == (backend, "f32", 2)
    colours = [RED if i % 3 else BLUE for i in range(23)]
    for item, result in zip(colours, infer_batch(client, colours), strict=True):
        r, _, b = result["outputs"]["mean_colour"]["data"]
        assert (r > 0.9 and b < 0.1) if item is RED else (b > 0.9 and r < 0.1), result
    metrics = client.ops.get("/metrics").text
    assert f'inference_runtime_info{{backend="{backend}",precision="f32"}} 1.0' in metrics
    assert "inference_model_instances 2.0" in metrics


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_model_failing_on_one_input_fails_that_input_alone_on_each_backend(serve, tmp_path, backend):
    client = serve(fails_on_white_model(tmp_path / "white.onnx"), backend=backend, max_batch_size=4)
    assert client.get("/v1/model").json()["runtime"]["backend"] == backend
    codes = [r.get("error", {}).get("code") for r in infer_batch(client, [BLACK, WHITE, BLACK])]
    assert codes == [None, "inference_failed", None]
    assert infer(client, WHITE).status_code == 422 and infer(client, BLACK).status_code == 200


def test_bf16_needs_openvino_and_onnxruntime_serves_f32(serve, tmp_path):
    path = mean_colour_model(tmp_path / "m.onnx")
    client = serve(path, backend="onnxruntime", precision="bf16")
    assert "needs the OpenVINO backend" in client.ops.get("/healthz").json()["error"]["message"]


def test_auto_falls_back_to_onnxruntime_when_openvino_cannot_load(serve, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(model_module, "OpenVinoBackend", broken)
    client = serve(mean_colour_model(tmp_path / "m.onnx"))
    runtime = client.get("/v1/model").json()["runtime"]
    assert runtime["backend"] == "onnxruntime" and "could not serve" in runtime["precision_reason"]
    with pytest.raises(ModelError, match="OpenVINO cannot load"):
        model_module.load_model(InferenceSettings(model_uri=str(tmp_path / "m.onnx"), backend="openvino"))


def _gate(tmp_path, path, **fields):
    report = {"model_sha256": sha256_file(path), "precision": "bf16", "f1": 0.976} | fields
    (tmp_path / (path.name + ".accuracy.json")).write_text(json.dumps(report))


def test_auto_precision_is_bf16_only_with_bf16_cpu_and_passed_gate_for_this_digest(tmp_path, monkeypatch):
    path = mean_colour_model(tmp_path / "m.onnx")
    settings = InferenceSettings(model_uri=str(path), backend="openvino")
    asked: list[str] = []
    real = model_module.OpenVinoBackend

    def recording(path, instances, threads, precision, input_scale=None):
        asked.append(precision)
        return real(path, instances, threads, "f32", input_scale)  # this CPU may lack bf16: only the request matters

    monkeypatch.setattr(model_module, "OpenVinoBackend", recording)
    monkeypatch.setattr(model_module, "bf16_flags", lambda: ["amx_bf16"])
    model_module.load_model(settings)  # no gate file
    _gate(tmp_path, path, model_sha256="0" * 64)  # another model's verdict
    model_module.load_model(settings)
    _gate(tmp_path, path, f1=MIN_F1 - 0.01)  # failed
    model_module.load_model(settings)
    _gate(tmp_path, path)  # passed, for this file
    loaded = model_module.load_model(settings)
    assert asked == ["f32", "f32", "f32", "bf16"]
    assert loaded.runtime["accuracy_gate"]["bf16_allowed"] is True
    monkeypatch.setattr(model_module, "bf16_flags", lambda: [])  # no native bf16: f32 whatever the gate says
    model_module.load_model(settings)
    assert asked[-1] == "f32"


def test_gate_verdicts():
    assert judge({"model_sha256": "a", "precision": "bf16", "f1": 0.98}, "a").allowed
    assert not judge({"model_sha256": "b", "precision": "bf16", "f1": 0.98}, "a").allowed
    assert not judge({"model_sha256": "a", "precision": "bf16", "f1": "high"}, "a").allowed
    assert not judge([], "a").allowed
    assert gate_uri("s3://bucket/m.onnx") == "s3://bucket/m.onnx.accuracy.json"


def test_int8_has_its_own_gate_file_and_a_lower_bar():
    int8 = {"model_sha256": "a", "precision": "int8", "f1": (MIN_F1_INT8 + MIN_F1) / 2}
    assert judge(int8, "a", "int8").allowed and not judge(int8, "a", "bf16").allowed
    assert not judge(int8 | {"f1": MIN_F1_INT8 - 0.001}, "a", "int8").allowed
    bf16 = {"model_sha256": "a", "precision": "bf16", "f1": 0.99}
    assert not judge(bf16, "a", "int8").allowed  # a bf16 verdict never allows int8
    assert gate_uri("s3://bucket/m.onnx", "int8") == "s3://bucket/m.onnx.int8.accuracy.json"


def test_int8_is_refused_at_start_up_without_openvino_or_without_a_verdict(serve, tmp_path):
    path = mean_colour_model(tmp_path / "m.onnx")
    client = serve(path, backend="onnxruntime", precision="int8")
    assert "needs the OpenVINO backend" in client.ops.get("/healthz").json()["error"]["message"]
    client = serve(path, precision="int8")
    message = client.ops.get("/healthz").json()["error"]["message"]
    assert "INFERENCE_PRECISION=int8: no gate file" in message and "tools.quantize" in message


def test_unreadable_gate_file_means_f32(tmp_path):
    (tmp_path / "m.onnx.accuracy.json").write_text("{not json")
    verdict = read_verdict(str(tmp_path / "m.onnx"), "a", str(tmp_path))
    assert not verdict.allowed and "not JSON" in verdict.reason


@pytest.mark.parametrize(
    "files, available, expected",
    [
        ({"cpu.max": "max 100000\n"}, 16, 16),  # v2, no limit: the CPUs it may run on
        ({"cpu.max": "200000 100000\n"}, 16, 2),  # v2, 2 CPUs
        ({"cpu.max": "150000 100000\n"}, 16, 2),  # 1.5 CPUs: rounded up
        ({"cpu.max": "50000 100000\n"}, 16, 1),
        ({"cpu.max": "800000 100000\n"}, 4, 4),  # a quota above the CPUs there are
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 16, 4),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 16, 16),  # v1, no limit
        ({}, 3, 3),
    ],
)
def test_cpu_limit_reads_the_cgroup_quota_not_the_host(tmp_path, files, available, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_limit(tmp_path, available=available) == expected


def test_bf16_flags_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert bf16_flags(cpuinfo) == ["amx_bf16", "avx512_bf16"]
    cpuinfo.write_text("flags\t\t: fpu avx2\n")
    assert bf16_flags(cpuinfo) == []


def test_batcher_runs_batches_on_several_workers_at_once():
    running = []
    peak = []
    lock = threading.Lock()

    def run(items):
        with lock:
            running.append(1)
            peak.append(len(running))
        time.sleep(0.05)
        with lock:
            running.pop()
        return [i * 2 for i in items]

    batcher = DynamicBatcher(run, max_batch=2, max_delay_s=0.001, max_queue=64, workers=3)
    futures = batcher.submit(list(range(12)))
    assert [f.result(timeout=5) for f in futures] == [i * 2 for i in range(12)]
    batcher.close()
    assert max(peak) >= 2


def test_compiled_precision_reads_openvinos_type_names():
    """OpenVINO reports a compiled model's precision as an ov.Type printing "<Type: 'bfloat16'>": read as
    f32, it hid bf16 on AMX CPUs from /v1/model, the accuracy gate and `auto`."""
    ov = pytest.importorskip("openvino")
    from inference_service.backends import compiled_precision

    assert compiled_precision(ov.Type.bf16) == "bf16"
    assert compiled_precision(ov.Type.f32) == "f32"
    assert compiled_precision("bf16") == "bf16"
    assert compiled_precision("f32") == "f32"


def test_frames_in_flight_are_sized_from_the_instances():
    from inference_service.settings import queue_for

    auto = InferenceSettings(model_uri="m.onnx")
    assert queue_for(auto, instances=1, batch_capacity=4) == 64  # never below one full request
    assert queue_for(auto, instances=16, batch_capacity=4) == 256
    assert queue_for(InferenceSettings(model_uri="m.onnx", max_queue=100), instances=16, batch_capacity=4) == 100
