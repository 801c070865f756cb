"""The inference API's edge: any ONNX model serves; bad input gets a 4xx JSON error naming the problem."""

import cv2
import numpy as np
import pytest

from inference_service.settings import InferenceSettings
from tests.helpers import started_client, tiny_model
from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch


def jpeg(color=(0, 0, 255), size=(40, 30)):
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = color
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = tiny_model(tmp_path_factory.mktemp("model") / "mean.onnx")
    client = started_client(InferenceSettings(model_uri=str(path), max_image_bytes=64 * 1024, max_request_items=4))
    yield client
    client.__exit__(None, None, None)


def test_any_onnx_model_serves_raw_outputs(client):
    info = client.get("/v1/model").json()
    assert info["decoder"] == "raw" and info["input"]["shape"] == ["batch", 3, 16, 16]
    body = client.post("/v1/infer", content=jpeg(), headers={"Content-Type": "image/jpeg"}).json()
    red, green, blue = body["outputs"]["mean_colour"]["data"]
    assert red > 0.9 and green < 0.1 and blue < 0.1  # BGR (0,0,255) arrives as RGB red
    assert (body["width"], body["height"]) == (40, 30)
    # A model without version metadata is named by its bytes, not onnxruntime's 9223372036854775807.
    assert info["version"].startswith("sha256-") and body["model_version"] == info["version"]
    # Model time (its batch's run) and request time (queue, decode and model) are separate fields.
    assert 0 < body["model_ms"] <= body["request_ms"]


def test_nhwc_models_load_too(tmp_path):
    path = tiny_model(tmp_path / "nhwc.onnx", layout="NHWC")
    client = started_client(InferenceSettings(model_uri=str(path)))
    try:
        assert client.get("/v1/model").json()["input"]["layout"] == "NHWC"
        assert client.post("/v1/infer", content=jpeg(), headers={"Content-Type": "image/jpeg"}).status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_batch_reports_bad_items_individually(client):
    body = encode_batch([jpeg(), b"\xff\xd8not really", jpeg((255, 0, 0))])
    answer = client.post("/v1/infer/batch", content=body, headers={"Content-Type": BATCH_CONTENT_TYPE}).json()
    assert [("error" in r) for r in answer["results"]] == [False, True, False]
    assert answer["results"][1]["error"]["field"] == "items[1]"


@pytest.mark.parametrize(
    "path, content, content_type, status, code",
    [
        ("/v1/infer", jpeg(), "text/plain", 415, "unsupported_media_type"),
        ("/v1/infer", b"", "image/jpeg", 400, "empty_body"),
        ("/v1/infer", b"\xff\xd8\xff garbage", "image/jpeg", 422, "undecodable_image"),
        ("/v1/infer", b"x" * (64 * 1024 + 1), "image/jpeg", 413, "body_too_large"),
        ("/v1/infer/batch", b"\x00\x00\x00\x09abc", BATCH_CONTENT_TYPE, 400, "malformed_batch"),
        ("/v1/infer/batch", encode_batch([jpeg()] * 5), BATCH_CONTENT_TYPE, 400, "malformed_batch"),
        ("/v1/infer/batch", jpeg(), "image/jpeg", 415, "unsupported_media_type"),
        ("/v1/nowhere", b"", "image/jpeg", 404, "http_error"),
    ],
)
def test_bad_requests_get_json_errors(client, path, content, content_type, status, code):
    response = client.post(path, content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_health_and_metrics(client):
    assert client.ops.get("/healthz").json() == {"status": "ok"}
    before = _decodes(client.ops.get("/metrics").text)
    assert client.post("/v1/infer", content=jpeg(), headers={"Content-Type": "image/jpeg"}).status_code == 200
    metrics = client.ops.get("/metrics").text
    assert "inference_frames_total" in metrics and "inference_batch_size_bucket" in metrics
    assert _decodes(metrics) == before + 1, "each decoded image is timed"


def _decodes(metrics: str) -> float:
    (line,) = [line for line in metrics.splitlines() if line.startswith("inference_decode_seconds_count")]
    return float(line.split()[-1])


def test_unloadable_model_is_reported_not_crashed(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    client = ready_client_or_error(InferenceSettings(model_uri=str(bad)))
    try:
        response = client.ops.get("/readyz")
        assert response.status_code == 503 and "not a loadable ONNX model" in response.json()["error"]["message"]
        assert client.post("/v1/infer", content=jpeg(), headers={"Content-Type": "image/jpeg"}).status_code == 503
    finally:
        client.__exit__(None, None, None)


def ready_client_or_error(settings):
    return started_client(settings, ready=False)


def test_requests_are_counted_by_route_and_made_up_paths_share_one_label(client):
    from prometheus_client.parser import text_string_to_metric_families

    def counts() -> dict[tuple[str, str], float]:
        families = text_string_to_metric_families(client.ops.get("/metrics").text)
        return {(s.labels["endpoint"], s.labels["status"]): s.value for f in families if f.name == "inference_requests"
                for s in f.samples if s.name == "inference_requests_total"}  # fmt: skip

    before = counts()
    client.post("/v1/infer", content=jpeg(), headers={"Content-Type": "image/jpeg"})
    client.post("/v1/infer", content=b"", headers={"Content-Type": "image/jpeg"})
    for n in range(3):
        client.get(f"/probe-{n}/../admin")
    after = counts()

    def added(key: tuple[str, str]) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert added(("/v1/infer", "200")) == 1 and added(("/v1/infer", "400")) == 1
    assert added(("unmatched", "404")) == 3
    assert not any(endpoint.startswith("/probe") for endpoint, _ in after), "no label per requested path"


def test_a_request_whose_handler_raises_is_counted_as_500():
    import asyncio

    from inference_service.request_count import RequestCounter

    async def failing_app(scope, receive, send):
        raise RuntimeError("a bug")

    counted: list[tuple[str, int]] = []
    middleware = RequestCounter(failing_app, count=lambda endpoint, status: counted.append((endpoint, status)))

    async def call():
        async def send(message):
            pass

        async def receive():
            return {"type": "http.request"}

        await middleware({"type": "http", "path": "/v1/infer"}, receive, send)

    with pytest.raises(RuntimeError):
        asyncio.run(call())
    assert counted == [("unmatched", 500)]
