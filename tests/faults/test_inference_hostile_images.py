"""The hostile-image corpus against a real inference-service process with the default model: dimension
bombs (JPEG and PNG, 12000^2 to 40000^2), corrupt, truncated, random and empty inputs, through both
endpoints: no 5xx, the documented codes, valid frames still answered, and the process's peak memory
(VmHWM) bounded while it decodes frames at the full pixel budget from several clients at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest

from tests import jpeg_craft
from tests.helpers import serving_processes, tree_rss_mb
from tests.hostile_images import CORPUS, JPEG
from tools.harness.processes import free_port, inference_process
from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch

pytestmark = [pytest.mark.model, pytest.mark.faults]


@pytest.fixture(scope="module")
def server(default_model, tmp_path_factory):
    port = free_port()
    process = inference_process(
        port, tmp_path_factory.mktemp("logs"), default_model, INFERENCE_MAX_BATCH_SIZE="4"
    ).start()
    try:
        process.wait_ready(timeout_s=120)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield process, client
    finally:
        process.stop()


def post_batch(client, items):
    return client.post("/v1/infer/batch", content=encode_batch(items), headers={"Content-Type": BATCH_CONTENT_TYPE})


def test_hostile_images_get_their_4xx_and_the_service_keeps_answering(server):
    _, client = server
    statuses = []
    for name, (data, status, code) in sorted(CORPUS.items()):
        response = client.post(
            "/v1/infer", content=data, headers={"Content-Type": "image/png" if "png" in name else "image/jpeg"}
        )
        statuses.append(response.status_code)
        assert response.status_code == status, (name, response.text)
        if code:
            assert response.json()["error"]["code"] == code, name
    empty = client.post("/v1/infer", content=b"", headers={"Content-Type": "image/jpeg"})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_body"
    names = sorted(CORPUS)
    response = post_batch(client, [JPEG, *(CORPUS[n][0] for n in names), JPEG])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("error", {}).get("code") for r in results[1:-1]] == [CORPUS[n][2] for n in names]
    assert "detections" in results[0] and "detections" in results[-1]
    assert max(statuses) < 500
    valid = client.post("/v1/infer", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert valid.status_code == 200 and "detections" in valid.json()


def test_peak_memory_stays_bounded_under_bombs_and_full_budget_frames_from_many_clients(server):
    process, client = server
    pid = process.process.pid
    before = tree_rss_mb(pid, "VmHWM")  # every serving process's peak, summed
    bombs = [data for name, (data, _, code) in CORPUS.items() if code == "too_large"]
    full = cv2.imencode(".png", np.zeros((2160, 4096, 3), np.uint8))[1].tobytes()  # 30 KB, 26 MB decoded

    def send(i):
        items = (bombs * 10)[:64] if i % 2 else [full] * 8 + bombs
        for _ in range(5):  # a 503 says "not now": clients come back after Retry-After, as the consumer does
            response = post_batch(client, items)
            if response.status_code != 503:
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return response

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(send, range(6)))
    after = tree_rss_mb(pid, "VmHWM")
    workers = serving_processes(pid)
    print(f"inference VmHWM {before:.0f} MB -> {after:.0f} MB under 6 concurrent batches (bombs, 4096x2160 frames)")
    assert all(r.status_code in (200, 503) for r in responses), [r.text[:200] for r in responses]
    assert sum(r.status_code == 200 for r in responses) >= 3
    for response in responses:
        if response.status_code == 200:
            codes = {r.get("error", {}).get("code") for r in response.json()["results"]}
            assert codes <= {None, "too_large"}
    # The budgets bound each serving process: the pod's worst case is theirs times the processes.
    assert after - before < 400 * workers, f"peak RSS grew {after - before:.0f} MB over {workers} process(es)"
    assert after < 1024 * workers, f"peak RSS {after:.0f} MB over {workers} process(es)"


def test_scan_bombs_hold_no_budget_and_valid_frames_are_answered_meanwhile(server):
    """Scan bombs (4096x2160 progressive JPEGs of 20,000 tiny scans, about 20 s of CPU each to decode here) from
    several clients at once: each refused from its header (422 too_many_scans), none holding the decode budget,
    so valid frames sent at the same time are all answered (with the bombs decoded, two of them held the whole
    budget and every other request got 503 for over a minute)."""
    _, client = server
    bomb = jpeg_craft.with_scans(jpeg_craft.progressive_jpeg(4096, 2160), 20_000)

    def send(data: bytes) -> httpx.Response:
        return client.post("/v1/infer", content=data, headers={"Content-Type": "image/jpeg"})

    with ThreadPoolExecutor(6) as pool:
        bombs = [pool.submit(send, bomb) for _ in range(8)]
        valid = [pool.submit(send, JPEG) for _ in range(16)]
        batch = pool.submit(post_batch, client, [bomb, JPEG, bomb])
    for future in bombs:
        response = future.result()
        assert response.status_code == 422 and response.json()["error"]["code"] == "too_many_scans", response.text
    assert [f.result().status_code for f in valid] == [200] * 16
    results = batch.result().json()["results"]
    assert [r.get("error", {}).get("code") for r in results] == ["too_many_scans", None, "too_many_scans"]
