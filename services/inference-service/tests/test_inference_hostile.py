"""Hostile images against the inference API: dimension bombs, corrupt and truncated files, decoder
errors. Cost is checked from the header before decoding; every image fault is a 4xx (or a per-item
error in a batch), never a 5xx; 503 means only 'overloaded, retry'; the service keeps serving."""

from __future__ import annotations

import asyncio
import threading

import cv2
import numpy as np
import pytest

from inference_service.budget import AsyncBudget, Budget, BudgetExhausted
from inference_service.settings import InferenceSettings
from tests.helpers import peak_rss_mb, started_client, tiny_model
from tests.hostile_images import CORPUS, IMAGE, JPEG, PNG, PROGRESSIVE
from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = tiny_model(tmp_path_factory.mktemp("model") / "mean.onnx")
    client = started_client(
        InferenceSettings(model_uri=str(path), max_request_items=32, max_queue=64, busy_wait_ms=200)
    )
    yield client
    client.__exit__(None, None, None)


def post_one(client, data: bytes, content_type="image/jpeg"):
    return client.post("/v1/infer", content=data, headers={"Content-Type": content_type})


def post_batch(client, items: list[bytes]):
    return client.post("/v1/infer/batch", content=encode_batch(items), headers={"Content-Type": BATCH_CONTENT_TYPE})


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_hostile_image_gets_its_4xx_on_the_single_endpoint(client, name):
    data, status, code = CORPUS[name]
    response = post_one(client, data, "image/png" if "png" in name else "image/jpeg")
    assert response.status_code == status, response.text
    if code:
        error = response.json()["error"]
        assert (error["code"], error["field"]) == (code, "body") and error["message"]
    assert post_one(client, JPEG).status_code == 200  # and the service keeps answering


def test_a_batch_of_hostile_images_gets_per_item_errors_and_results_for_the_rest(client):
    names = sorted(CORPUS)
    items = [JPEG] + [CORPUS[n][0] for n in names] + [JPEG]
    response = post_batch(client, items)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert "outputs" in results[0] and "outputs" in results[-1]
    for offset, name in enumerate(names, start=1):
        expected = CORPUS[name][2]
        if expected is None:
            assert "outputs" in results[offset], (name, results[offset])
        else:
            assert results[offset]["error"]["code"] == expected, (name, results[offset])
            assert results[offset]["error"]["field"] == f"items[{offset}]" and results[offset]["error"]["message"]
    # A zero-length item breaks the batch framing contract (vidpipe.contract.decode_batch): the whole
    # request is refused, naming the item.
    response = post_batch(client, [JPEG, b"", JPEG])
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_batch"
    assert "item 1" in response.json()["error"]["message"]
    metrics = client.ops.get("/metrics").text
    assert 'inference_frame_errors_total{reason="too_large"}' in metrics


def test_the_pixel_budget_is_a_setting(tmp_path):
    path = tiny_model(tmp_path / "mean.onnx")
    client = started_client(
        InferenceSettings(model_uri=str(path), max_pixels=64 * 48 - 1, max_inflight_decode_pixels=64 * 48)
    )
    try:
        response = post_one(client, JPEG)
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
        small = cv2.imencode(".jpg", IMAGE[:40, :40])[1].tobytes()
        assert post_one(client, small).status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_any_decoder_exception_is_an_image_error_not_a_5xx(client, monkeypatch):
    import inference_service.preprocess as preprocess

    def explode(*_):
        raise cv2.error("OpenCV(5.0.0) imgcodecs: Insufficient memory to allocate 6400000000 bytes")

    monkeypatch.setattr(preprocess.cv2, "imdecode", explode)
    response = post_one(client, JPEG)
    assert response.status_code == 422 and response.json()["error"]["code"] == "undecodable_image"
    assert "Insufficient memory" in response.json()["error"]["message"]
    results = post_batch(client, [JPEG, PNG]).json()["results"]
    assert [r["error"]["code"] for r in results] == ["undecodable_image"] * 2
    monkeypatch.undo()
    assert post_one(client, JPEG).status_code == 200


def test_a_header_that_lies_about_the_decoded_size_is_refused(client, monkeypatch):
    import inference_service.preprocess as preprocess

    real = preprocess.cv2.imdecode
    monkeypatch.setattr(
        preprocess.cv2,
        "imdecode",
        lambda buf, flags: np.zeros((4000, 4000, 3), np.uint8) if real(buf, flags) is not None else None,
    )
    response = post_one(client, JPEG)
    assert response.status_code == 422 and "header declares 64x48" in response.json()["error"]["message"]


def test_full_memory_budgets_answer_503_with_retry_after_then_recover(client):
    state = client.app.state.service
    for budget, amount in (
        (state.decode_pixels, state.decode_pixels.capacity),
        (state.frames_in_flight, state.frames_in_flight.capacity),
    ):
        if isinstance(budget, Budget):
            budget.acquire(amount, 0)
        else:
            assert budget.try_acquire(amount)
        try:
            for response in (post_one(client, JPEG), post_batch(client, [JPEG, JPEG])):
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] and response.json()["error"]["code"] == "overloaded"
        finally:
            if isinstance(budget, Budget):
                budget.release(amount)
            else:
                budget._in_use -= amount  # released from the test thread: no waiters to wake here
        assert post_one(client, JPEG).status_code == 200
    # A refused header costs nothing of the decode budget: bombs are answered even while it is full.
    state.decode_pixels.acquire(state.decode_pixels.capacity, 0)
    try:
        assert post_one(client, CORPUS["jpeg_bomb_40000"][0]).status_code == 413
    finally:
        state.decode_pixels.release(state.decode_pixels.capacity)
    assert (state.decode_pixels.in_use, state.frames_in_flight.in_use, state.body_bytes.in_use) == (0, 0, 0)


def test_a_scan_bomb_is_refused_from_its_header_holding_no_decode_budget_and_counted(client):
    state = client.app.state.service
    bomb = CORPUS["jpeg_2000_scans"][0]

    def counted() -> float:
        value = state.metrics.registry.get_sample_value("inference_frame_errors_total", {"reason": "too_many_scans"})
        return value or 0.0

    before = counted()
    state.decode_pixels.acquire(state.decode_pixels.capacity, 0)  # as if other frames were being decoded
    try:
        response = post_one(client, bomb)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("too_many_scans", "body")
        assert "more than 64 scans" in error["message"]
        results = post_batch(client, [bomb, bomb]).json()["results"]
        assert [r["error"]["code"] for r in results] == ["too_many_scans"] * 2
    finally:
        state.decode_pixels.release(state.decode_pixels.capacity)
    assert counted() == before + 3
    assert post_one(client, PROGRESSIVE).status_code == 200


def test_request_bodies_are_bounded_by_the_body_budget(tmp_path):
    path = tiny_model(tmp_path / "mean.onnx")
    settings = InferenceSettings(
        model_uri=str(path),
        max_image_bytes=4096,
        max_request_items=4,
        max_inflight_body_bytes=4 * 4100,
        busy_wait_ms=100,
    )
    client = started_client(settings)
    try:
        state = client.app.state.service
        assert state.body_bytes.try_acquire(4 * 4100 - 100)
        response = post_batch(client, [JPEG, JPEG])
        assert response.status_code == 503 and response.json()["error"]["code"] == "overloaded"
        state.body_bytes._in_use = 0
        assert post_batch(client, [JPEG, JPEG]).status_code == 200
        assert state.body_bytes.in_use == 0
    finally:
        client.__exit__(None, None, None)


def test_settings_refuse_budgets_that_cannot_hold_one_request():
    with pytest.raises(ValueError, match="INFERENCE_MAX_INFLIGHT_BODY_BYTES"):
        InferenceSettings(model_uri="m.onnx", max_inflight_body_bytes=1024 * 1024)
    with pytest.raises(ValueError, match="INFERENCE_MAX_INFLIGHT_DECODE_PIXELS"):
        InferenceSettings(model_uri="m.onnx", max_pixels=1000, max_inflight_decode_pixels=999)
    with pytest.raises(ValueError, match="INFERENCE_MAX_REQUEST_ITEMS"):
        InferenceSettings(model_uri="m.onnx", max_queue=16, max_request_items=64)


def test_budget_waits_for_a_release_then_times_out():
    budget = Budget(10, "pixels")
    budget.acquire(8, 0)
    threading.Timer(0.05, budget.release, (8,)).start()
    budget.acquire(5, 2)  # waited for the release
    with pytest.raises(BudgetExhausted):
        budget.acquire(6, 0.05)
    with pytest.raises(ValueError):
        budget.acquire(11, 0)


def test_async_budget_waits_for_a_release_then_times_out():
    async def scenario():
        budget = AsyncBudget(10, "bytes")
        await budget.acquire(8, 0)
        asyncio.get_running_loop().call_later(0.05, budget.release, 8)
        await budget.acquire(5, 2)
        with pytest.raises(BudgetExhausted):
            await budget.acquire(6, 0.05)
        assert budget.in_use == 5

    asyncio.run(scenario())


def test_peak_memory_stays_bounded_under_a_batch_of_bombs_and_budget_sized_frames(client):
    """The service runs in this process (TestClient): reset the peak RSS, send 24 bombs and 8 frames at
    the full 4096x2160 budget (tiny PNGs that decode to 26 MB each), and read the new peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    full = cv2.imencode(".png", np.zeros((2160, 4096, 3), np.uint8))[1].tobytes()
    bombs = [CORPUS[n][0] for n in CORPUS if "bomb" in n] * 4
    before = peak_rss_mb()
    response = post_batch(client, bombs + [full] * 8)
    growth = peak_rss_mb() - before
    assert response.status_code == 200
    codes = [r.get("error", {}).get("code") for r in response.json()["results"]]
    assert codes == ["too_large"] * len(bombs) + [None] * 8
    print(f"peak RSS growth: {growth:.0f} MB")
    assert growth < 200, f"peak RSS grew {growth:.0f} MB"
