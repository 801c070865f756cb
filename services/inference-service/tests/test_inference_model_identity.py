"""Which model the service serves: its name, the same under either runtime, and its bytes, pinned by digest."""

from __future__ import annotations

import hashlib

import boto3
import cv2
import numpy as np
import onnx
import pytest
from moto import mock_aws
from onnx import TensorProto, helper
from pydantic import ValidationError

from inference_service.backends import openvino_version
from inference_service.model import ModelError, load_model, model_name, onnx_graph_name
from inference_service.settings import InferenceSettings
from tests.helpers import started_client
from vidpipe.config import describe_errors

RUNTIMES = ["onnxruntime"] + (["openvino"] if openvino_version() else [])


def mean_model(path, graph_name="mean_colour", metadata=None, padding_nodes=0):
    """Mean colour per image; `padding_nodes` Identity nodes before the graph's name field in the file, as
    an exporter's thousands of nodes would be."""
    nodes = [helper.make_node("ReduceMean", ["images", "axes"], ["mean"], keepdims=0)]
    nodes += [helper.make_node("Identity", ["mean"], [f"pad{i}"]) for i in range(padding_nodes)]
    graph = helper.make_graph(
        nodes,
        graph_name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", 3])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_graph_name_is_read_from_the_file_without_the_onnx_package(tmp_path):
    assert onnx_graph_name(mean_model(tmp_path / "a.onnx", "vehicles-v3", padding_nodes=500)) == "vehicles-v3"
    (tmp_path / "not.onnx").write_bytes(b"\x0f\xff garbage, not protobuf")
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert onnx_graph_name(tmp_path / "not.onnx") is None and onnx_graph_name(tmp_path / "empty.onnx") is None
    assert onnx_graph_name(tmp_path / "missing.onnx") is None


@pytest.mark.parametrize(
    "graph, metadata, expected",
    [
        ("mean_colour", {}, "mean_colour"),  # the graph's name
        ("mean_colour", {"name": "colour-probe"}, "colour-probe"),  # metadata first
        ("main_graph", {}, "probe-v2"),  # PyTorch's generic graph name is no name: the file's stem
        ("", {}, "probe-v2"),
    ],
)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_model_name_is_the_same_under_both_runtimes(tmp_path, runtime, graph, metadata, expected):
    path = mean_model(tmp_path / "probe-v2.onnx", graph, metadata)
    model = load_model(InferenceSettings(model_uri=str(path), backend=runtime, precision="f32"))
    assert model.runtime["backend"] == runtime
    assert model.name == expected and model.describe()["name"] == expected
    assert model_name(model.metadata, path) == expected


@pytest.mark.skipif("openvino" not in RUNTIMES, reason="openvino is not installed")
def test_openvino_serves_a_nameless_model_under_its_file_name_not_its_own(tmp_path):
    client = started_client(
        InferenceSettings(model_uri=str(mean_model(tmp_path / "lobby-cam.onnx", "")), backend="openvino")
    )
    try:
        assert client.get("/v1/model").json()["name"] == "lobby-cam"
        red = np.zeros((16, 16, 3), np.uint8)
        red[..., 2] = 255
        body = cv2.imencode(".png", red)[1].tobytes()
        answer = client.post("/v1/infer", content=body, headers={"Content-Type": "image/png"}).json()
        assert answer["model_name"] == "lobby-cam"
    finally:
        client.__exit__(None, None, None)


def test_a_pinned_digest_loads_only_that_file(tmp_path):
    path = mean_model(tmp_path / "model.onnx")
    digest = sha256(path)
    assert load_model(InferenceSettings(model_uri=str(path), model_sha256=digest)).name == "mean_colour"
    assert load_model(InferenceSettings(model_uri=str(path), model_sha256=digest.upper())).name == "mean_colour"
    mean_model(path, metadata={"version": "tampered"})  # same place, other bytes
    with pytest.raises(ModelError) as refused:
        load_model(InferenceSettings(model_uri=str(path), model_sha256=digest))
    message = str(refused.value)
    assert "INFERENCE_MODEL_SHA256" in message and digest in message and sha256(path) in message


def test_the_digest_is_checked_before_any_runtime_parses_the_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model, maybe an exploit for a parser")
    with pytest.raises(ModelError, match="INFERENCE_MODEL_SHA256"):
        load_model(InferenceSettings(model_uri=str(path), model_sha256="0" * 64))


def test_a_model_fetched_from_s3_is_checked_and_a_mismatch_keeps_the_service_unready(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    local = mean_model(tmp_path / "model.onnx")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(local), "models", "detector/model.onnx")
        uri = "s3://models/detector/model.onnx"
        cache = str(tmp_path / "cache")
        good = load_model(InferenceSettings(model_uri=uri, model_cache_dir=cache, model_sha256=sha256(local)))
        assert good.name == "mean_colour"
        client = started_client(
            InferenceSettings(model_uri=uri, model_cache_dir=cache, model_sha256="ab" * 32), ready=False
        )
        try:
            state = client.app.state.service
            assert state.model is None and "INFERENCE_MODEL_SHA256" in state.load_error
            assert "ab" * 32 in state.load_error and sha256(local) in state.load_error
            refused = client.post("/v1/infer", content=b"\xff\xd8", headers={"Content-Type": "image/jpeg"})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
        finally:
            client.__exit__(None, None, None)


@pytest.mark.parametrize("value", ["abc", "g" * 64, "0" * 63, "sha256:" + "0" * 64])
def test_a_malformed_digest_is_a_configuration_error_naming_the_variable(value):
    with pytest.raises(ValidationError) as invalid:
        InferenceSettings(model_uri="m.onnx", model_sha256=value)
    assert "INFERENCE_MODEL_SHA256" in describe_errors(InferenceSettings, invalid.value)
