"""Models the service is given: fed correctly (fixed batch, one-image-per-run), or refused at start-up
naming the input; a model failing on one input fails that input alone; raw-mode answers stay small."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vidpipe.contract import BATCH_CONTENT_TYPE, MAX_RAW_OUTPUT_VALUES, RawOutput, encode_batch


def save_model(path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def image_input(name="images", shape=("batch", 3, 16, 16), elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, list(shape))


def mean_colour_model(path, batch=("batch")):
    """Mean RGB per image, with the batch axis as given (an int: fixed)."""
    return save_model(
        path,
        [helper.make_node("ReduceMean", ["images", "axes"], ["mean_colour"], keepdims=0)],
        [image_input(shape=(batch, 3, 16, 16))],
        [helper.make_tensor_value_info("mean_colour", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])],
    )


def jpeg(bgr=(0, 0, 255), size=(40, 30)):
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = bgr
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


RED, BLUE, BLACK, WHITE = jpeg((0, 0, 255)), jpeg((255, 0, 0)), jpeg((0, 0, 0)), jpeg((255, 255, 255))


def infer(client, data):
    return client.post("/v1/infer", content=data, headers={"Content-Type": "image/jpeg"})


def infer_batch(client, items):
    response = client.post("/v1/infer/batch", content=encode_batch(items), headers={"Content-Type": BATCH_CONTENT_TYPE})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_a_fixed_batch_of_10_is_padded_and_larger_batches_split(serve, tmp_path):
    client = serve(mean_colour_model(tmp_path / "fixed10.onnx", batch=10), max_batch_size=4, max_request_items=23)
    assert client.ops.get("/readyz").status_code == 200
    assert client.get("/v1/model").json()["input"]["shape"] == [10, 3, 16, 16]
    red = infer(client, RED)
    assert red.status_code == 200, red.text
    assert red.json()["outputs"]["mean_colour"]["data"][0] > 0.9
    colours = [RED if i % 3 else BLUE for i in range(23)]  # 10 + 10 + 3 (padded)
    results = infer_batch(client, colours)
    for item, result in zip(colours, results, strict=True):
        r, _, b = result["outputs"]["mean_colour"]["data"]
        assert (r > 0.9 and b < 0.1) if item is RED else (b > 0.9 and r < 0.1), result


def test_a_dynamic_batch_axis_that_runs_one_image_at_a_time_is_served_one_per_run(serve, tmp_path):
    path = save_model(
        tmp_path / "reshape1.onnx",
        [helper.make_node("Reshape", ["images", "flat"], ["flat_pixels"])],
        [image_input()],
        [helper.make_tensor_value_info("flat_pixels", TensorProto.FLOAT, [1, 768])],
        [helper.make_tensor("flat", TensorProto.INT64, [2], [1, 768])],
    )
    client = serve(path, max_batch_size=4)
    assert client.app.state.service.load_error is None
    results = infer_batch(client, [RED, BLUE, RED])
    assert [r["outputs"]["flat_pixels"]["shape"] for r in results] == [[768]] * 3
    assert results[1]["outputs"]["flat_pixels"]["data"][0] == 0.0  # blue: no red in the first plane


def two_image_inputs(path):
    return save_model(
        path,
        [helper.make_node("Add", ["left", "right"], ["sum"])],
        [image_input("left"), image_input("right", ("batch", 3, 16, 16))],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 3, 16, 16])],
    )


def single_input(path, shape, elem=TensorProto.FLOAT):
    return save_model(
        path,
        [helper.make_node("Identity", ["images"], ["out"])],
        [image_input(shape=shape, elem=elem)],
        [helper.make_tensor_value_info("out", elem, list(shape))],
    )


@pytest.mark.parametrize(
    "build, expected",
    [
        (two_image_inputs, ["2 inputs", "'left' (tensor(float), shape ['batch', 3, 16, 16])", "'right'"]),
        (
            lambda p: single_input(p, ("batch", 3, 16, 16), TensorProto.INT64),
            ["'images' (tensor(int64)", "element type"],
        ),
        (lambda p: single_input(p, ("batch", 3, 256)), ["'images'", "shape ['batch', 3, 256]", "rank 3"]),
        (lambda p: single_input(p, ("batch", 1, 16, 16)), ["'images'", "shape ['batch', 1, 16, 16]", "3-channel"]),
        (lambda p: single_input(p, (1000, 3, 16, 16)), ["fixed batch of 1000"]),
    ],
)
def test_models_the_service_cannot_feed_are_refused_at_start_up_naming_the_input(serve, tmp_path, build, expected):
    client = serve(build(tmp_path / "unfeedable.onnx"))
    health = client.ops.get("/healthz")
    assert health.status_code == 503 and health.json()["error"]["code"] == "model_unavailable"
    message = health.json()["error"]["message"]
    for part in expected:
        assert part in message, message
    assert client.ops.get("/readyz").status_code == 503
    response = infer(client, RED)
    assert response.status_code == 503 and response.json()["error"]["code"] == "model_unavailable"


def fails_on_white_model(path):
    """Expand to a shape computed from the pixels: a batch holding a white image (max 1.0) asks for a
    broadcast to 7 along a side of 8, which onnxruntime refuses (INVALID_ARGUMENT) at run time."""
    return save_model(
        path,
        [
            helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
            helper.make_node("Round", ["peak"], ["rounded"]),
            helper.make_node("Mul", ["rounded", "six"], ["scaled"]),
            helper.make_node("Add", ["scaled", "one"], ["side"]),
            helper.make_node("Cast", ["side"], ["side_int"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["side_int", "one_dim"], ["target"]),
            helper.make_node("Expand", ["images", "target"], ["expanded"]),
        ],
        [image_input(shape=("batch", 3, 8, 8))],
        [helper.make_tensor_value_info("expanded", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [
            helper.make_tensor("six", TensorProto.FLOAT, [], [6.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("one_dim", TensorProto.INT64, [1], [1]),
        ],
    )


def test_a_model_failing_on_one_input_fails_that_input_alone(serve, tmp_path):
    client = serve(fails_on_white_model(tmp_path / "white.onnx"), max_batch_size=4, max_queue_delay_ms=50)
    assert client.ops.get("/readyz").status_code == 200
    results = infer_batch(client, [BLACK, WHITE, BLACK, BLACK, WHITE])
    codes = [r.get("error", {}).get("code") for r in results]
    assert codes == [None, "inference_failed", None, None, "inference_failed"]
    assert results[1]["error"]["field"] == "items[1]" and "failed on this image" in results[1]["error"]["message"]
    assert results[0]["outputs"]["expanded"]["shape"] == [3, 8, 8]
    single = infer(client, WHITE)
    assert single.status_code == 422 and single.json()["error"] == {
        "code": "inference_failed",
        "message": single.json()["error"]["message"],
        "field": "body",
    }
    assert infer(client, BLACK).status_code == 200  # and it keeps serving
    assert 'inference_frame_errors_total{reason="inference_failed"} 3.0' in client.ops.get("/metrics").text


def heatmap_model(path):
    """A pose-style model: a 17-channel heatmap at the input's 96x128 (208,896 values per frame), a small
    tensor with NaN (log of a negative) and one that is all -inf (log 0)."""
    return save_model(
        path,
        [
            helper.make_node("ReduceMean", ["images", "channel_axis"], ["grey"], keepdims=1),
            helper.make_node("Mul", ["grey", "joints"], ["heatmap"]),
            helper.make_node("ReduceMean", ["images", "plane_axes"], ["colour"], keepdims=0),
            helper.make_node("Sub", ["colour", "half"], ["centred"]),
            helper.make_node("Log", ["centred"], ["log_colour"]),
            helper.make_node("Sub", ["colour", "colour"], ["zeros"]),
            helper.make_node("Log", ["zeros"], ["log_zero"]),
        ],
        [image_input(shape=("batch", 3, 96, 128))],
        [
            helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["batch", 17, 96, 128]),
            helper.make_tensor_value_info("log_colour", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("log_zero", TensorProto.FLOAT, ["batch", 3]),
        ],
        [
            helper.make_tensor("channel_axis", TensorProto.INT64, [1], [1]),
            helper.make_tensor("plane_axes", TensorProto.INT64, [2], [2, 3]),
            helper.make_tensor("joints", TensorProto.FLOAT, [1, 17, 1, 1], np.linspace(0.1, 1.7, 17).tolist()),
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        ],
    )


def test_raw_mode_answers_small_contract_outputs_even_for_a_heatmap(serve, tmp_path):
    client = serve(heatmap_model(tmp_path / "heatmap.onnx"))
    response = infer(client, RED)
    assert response.status_code == 200, response.text
    assert len(response.content) < 64 * 1024, len(response.content)
    outputs = {name: RawOutput.model_validate(value) for name, value in response.json()["outputs"].items()}
    heatmap = outputs["heatmap"]
    assert heatmap.shape == [17, 96, 128] and heatmap.dtype == "float32" and heatmap.data is None
    assert 17 * 96 * 128 > MAX_RAW_OUTPUT_VALUES
    grey = 1 / 3  # red: (1 + 0 + 0) / 3
    assert heatmap.min == pytest.approx(0.1 * grey, rel=2e-2) and heatmap.max == pytest.approx(1.7 * grey, rel=2e-2)
    assert heatmap.mean == pytest.approx(0.9 * grey, rel=2e-2)
    log_colour = outputs["log_colour"]  # log(1 - 0.5) for red, NaN for green and blue
    assert log_colour.data[0] == pytest.approx(np.log(0.5), abs=0.01) and log_colour.data[1:] == [None, None]
    assert log_colour.min == log_colour.max == log_colour.data[0]
    assert outputs["log_zero"].data == [None, None, None] and outputs["log_zero"].min is None
    results = infer_batch(client, [RED] * 8)
    assert all(r["outputs"]["heatmap"].get("data") is None for r in results)


def test_the_bench_null_model_answers_one_detection_per_image_through_the_service(tmp_path):
    """bench.null_model imitates the default model's input and metadata, so the service's ceiling (g) runs
    the real decode, batching, NMS and JSON, and the model costs nothing."""
    from bench.null_model import NULL_NAME, null_model
    from inference_service.settings import InferenceSettings
    from tests.helpers import started_client
    from tools.paths import DEFAULT_MODEL

    if not DEFAULT_MODEL.exists():
        pytest.skip("the default model is fetched by make setup")
    path = null_model(DEFAULT_MODEL, tmp_path / "null.onnx")
    client = started_client(InferenceSettings(model_uri=str(path)))
    try:
        assert client.get("/v1/model").json()["name"] == NULL_NAME
        image = cv2.imencode(".jpg", np.full((272, 640, 3), 128, np.uint8))[1].tobytes()
        answer = client.post(
            "/v1/infer/batch", content=encode_batch([image] * 3), headers={"Content-Type": BATCH_CONTENT_TYPE}
        ).json()
        assert [[d["label"] for d in r["detections"]] for r in answer["results"]] == [["car"]] * 3
    finally:
        client.__exit__(None, None, None)
