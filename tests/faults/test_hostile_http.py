"""Hostile HTTP clients against the real service processes (the inference service with the default
model, the analytics service on the real broker), each case a row of the Reliability table: a declared
256 MiB body held open, an endless header, the live view asked for another stream's archived frame.
Valid frames flow meanwhile and are counted; the process's resident memory is read before and after.
Also: what may scrape the ops port cannot call the API, and the API refuses a missing or wrong token."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.analytics_support import (
    analytics_env,
    analytics_topics,
    get_json,
    http,
    metric,
    passage_docs,
    produce_results,
    wait_for,
    write_streams_file,
)
from tests.faults.harness import Account, record_row
from tests.helpers import serving_processes, tree_rss_mb, video_jpegs
from tools.harness.processes import analytics_process, analytics_url, free_port, inference_process, ops_url
from vidpipe.contract import BATCH_CONTENT_TYPE
from vidpipe.storage import LocalStorage, frame_key

pytestmark = [pytest.mark.faults]

TOKEN = "fault-suite-inference-token"
LIVE_TOKEN = "fault-suite-live-view-token"
FRAMES = 40
DECLARED = 256 * 1024 * 1024
RSS_GROWTH_LIMIT_MB = 64  # what the attacks may cost at most; before the edge, two declared bodies cost 427 MiB


def rss_mb(pid: int) -> float:
    return tree_rss_mb(pid)  # the supervisor and its serving processes


@pytest.fixture(scope="module")
def inference(default_model, sample_video, tmp_path_factory):
    port = free_port()
    process = inference_process(port, tmp_path_factory.mktemp("logs"), default_model, INFERENCE_API_TOKEN=TOKEN)
    process.start()
    try:
        process.wait_ready(timeout_s=120)
        frames = video_jpegs(sample_video, FRAMES)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            for frame in frames[:4]:  # warm: the first requests' allocations are not the attack's
                assert client.post("/v1/infer", content=frame).status_code == 200
            yield process, port, client, frames
    finally:
        process.stop()


def send_frames(client: httpx.Client, frames: list[bytes]) -> int:
    """How many of the frames were answered with their result."""
    return sum(client.post("/v1/infer", content=frame).status_code == 200 for frame in frames)


def raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


@pytest.mark.model
def test_a_declared_256_mib_body_held_open(inference):
    process, port, client, frames = inference
    pid = process.process.pid
    before = rss_mb(pid)
    held = [
        raw(
            port,
            f"POST /v1/infer/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {BATCH_CONTENT_TYPE}\r\nContent-Length: {DECLARED}\r\n\r\n".encode(),
        )
        for _ in range(2)
    ]
    try:
        answered = send_frames(client, frames)
        growth = rss_mb(pid) - before
    finally:
        for sock in held:
            sock.close()
    assert process.running, process.log_tail()
    assert answered == len(frames), "every other request is answered while the bodies are held"
    assert growth < RSS_GROWTH_LIMIT_MB * serving_processes(pid), f"RSS grew {growth:.0f} MiB"
    record_row(
        "hostile HTTP: a declared 256 MiB body held open",
        f"two connections declare 256 MiB bodies and send nothing: they hold no memory (RSS {growth:+.0f} MiB), "
        "every other request is answered; the body timeout closes them",
        Account(len(frames), answered, 0, []),
    )


@pytest.mark.model
def test_an_endless_header(inference):
    process, port, client, frames = inference
    pid = process.process.pid
    before = rss_mb(pid)
    sock = raw(port, f"POST /v1/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Endless: ".encode())
    sent = 0
    try:
        while sent < 256 * 1024 * 1024:
            sock.sendall(b"a" * 65536)
            sent += 65536
    except (ConnectionResetError, BrokenPipeError):
        pass
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    sock.close()
    growth = rss_mb(pid) - before
    answered = send_frames(client, frames)
    assert process.running, process.log_tail()
    assert answer.startswith(b"HTTP/1.1 431 ") and b"headers_too_large" in answer, answer[:200]
    assert sent < 16 * 1024 * 1024, f"the server read {sent} bytes of header before closing"
    assert growth < RSS_GROWTH_LIMIT_MB * serving_processes(pid), f"RSS grew {growth:.0f} MiB"
    assert answered == len(frames)
    record_row(
        "hostile HTTP: an endless header",
        f"a header value that never ends: 431 and the connection closed after 16 KiB (the client managed to "
        f"send {sent // 1024} KiB), RSS {growth:+.0f} MiB; every frame after it is answered",
        Account(len(frames), answered, 0, []),
    )


@pytest.mark.model
def test_the_ops_port_cannot_infer_and_the_api_needs_its_token(inference):
    process, port, client, frames = inference
    ops = ops_url(process, "")
    with httpx.Client(timeout=30) as plain:
        for path in ("/v1/infer", "/v1/infer/batch"):
            answer = plain.post(ops + path, content=frames[0], headers={"Authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert plain.get(ops + "/readyz").status_code == 200 and plain.get(ops + "/metrics").status_code == 200
        api = f"http://127.0.0.1:{port}"
        for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"}, {"Authorization": f"Basic {TOKEN}"}):
            answer = plain.post(api + "/v1/infer", content=frames[0], headers={"Content-Type": "image/jpeg", **headers})
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
        assert plain.get(api + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    rebound = client.post("/v1/infer", content=frames[0], headers={"Host": "rebound.example:8080"})
    assert rebound.status_code == 421


@pytest.mark.broker
def test_the_live_view_asked_for_an_archived_frame_of_another_stream(kafka_bootstrap, kafka_settings, tmp_path):
    """The archive holds frames of two streams; this replica analyzes "cam-a" only (the streams file
    lists it), as another replica would analyze "cam-b". Whatever the client asks, the live view serves
    "cam-a"'s latest frames and no frame of "cam-b"."""
    topics = analytics_topics(kafka_settings)
    archive = LocalStorage(tmp_path / "archive")
    start_us = time.time_ns() // 1000 - 60_000_000
    docs = {stream: passage_docs(stream, 0, start_us, frames=FRAMES) for stream in ("cam-a", "cam-b")}
    for stream, stream_docs in docs.items():
        for doc in stream_docs:
            archive.put(frame_key(stream, 0, doc["capture_ts_us"], doc["seq"]), f"{stream} {doc['seq']}".encode())
    streams_file = write_streams_file(tmp_path / "streams.yaml", {}, streams=["cam-a"])
    service = analytics_process(
        kafka_bootstrap, tmp_path, streams_file, str(archive.root), free_port(), ANALYTICS_API_TOKEN=LIVE_TOKEN,
        **analytics_env(topics),
    ).start()  # fmt: skip
    try:
        service.wait_ready(timeout_s=90)
        produced = produce_results(kafka_settings, topics.results, docs["cam-a"] + docs["cam-b"])
        assert produced == 2 * FRAMES
        auth = {"Authorization": f"Bearer {LIVE_TOKEN}"}
        last = docs["cam-a"][-1]
        streams = wait_for(
            lambda: [s for s in get_json(analytics_url(service, "/api/streams"), auth)["streams"]
                     if s["seq"] == last["seq"]],
            "cam-a's last result in the live view",
            service,
        )  # fmt: skip
        b_last = docs["cam-b"][-1]
        asks = {
            "/api/streams/cam-b/frame": (auth, 404),
            f"/api/streams/cam-b/frame?epoch=0&seq={b_last['seq']}": (auth, 404),
            f"/api/frames/cam-b/{b_last['seq']}?ts={b_last['capture_ts_us']}&epoch=0": (auth, 404),
            "/api/streams/cam-b/latest": (auth, 404),
            "/api/streams/cam-a/frame?seq=0": (auth, 404),  # archived, analyzed, no longer recent
            "/api/streams/cam-a/frame": ({}, 401),
            f"/api/streams/cam-a/frame?token={LIVE_TOKEN}": ({}, 401),  # a token in a link opens the page only
        }
        answers = {path: http(analytics_url(service, path), headers=headers)[0] for path, (headers, _) in asks.items()}
        rebound = http(analytics_url(service, "/api/streams/cam-a/frame"), headers={**auth, "Host": "rebound.example"})
        status, _, body = http(analytics_url(service, "/api/streams/cam-a/frame"), headers=auth)
        listed = [s["stream_id"] for s in get_json(analytics_url(service, "/api/streams"), auth)["streams"]]
        skipped = wait_for(
            lambda: metric(http(ops_url(service, "/metrics"))[2].decode(),
                           "vidpipe_analytics_other_stream_results_total", reason="unlisted_stream") == FRAMES,
            "cam-b's results counted and skipped",
            service,
        )  # fmt: skip
        assert service.running, service.log_tail()
    finally:
        assert service.stop() == 0, service.log_tail()
    assert answers == {path: expected for path, (_, expected) in asks.items()}
    assert rebound[0] == 421
    assert (status, body) == (200, f"cam-a {last['seq']}".encode())
    assert listed == ["cam-a"]
    assert skipped
    (summary,) = streams
    record_row(
        "hostile HTTP: the live view asked for an archived frame of another stream",
        "the archive holds two streams' frames, this replica analyzes one: the other's frames, the archive by "
        "key and old frames are 404, no token 401, a rebound Host 421; only the latest analyzed frames are served",
        Account(FRAMES, summary["frames"], 0, []),
    )
