"""The inference service's HTTP edge through real uvicorn on loopback sockets (the API and the ops port,
as __main__ serves them): the token and Host guard, the ops port without the API, a declared body that
never comes holding nothing, and a request whose client left costing nothing more."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest
import uvicorn

from inference_service.app import create_app, create_ops_app
from inference_service.settings import InferenceSettings
from tests.helpers import tiny_model
from tools.harness.processes import free_port
from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch
from vidpipe.http_edge import api_config, ops_config

TOKEN = "inference-token-for-the-unit-tests"
JPEG = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()


class Service:
    def __init__(self, settings: InferenceSettings):
        self.app = create_app(settings)
        self.state = self.app.state.service
        self.port, self.ops_port = free_port(), free_port()
        self.servers = [
            uvicorn.Server(api_config(self.app, settings, "127.0.0.1", self.port, "error", graceful_s=5)),
            uvicorn.Server(ops_config(create_ops_app(self.state), settings, "127.0.0.1", self.ops_port, "error")),
        ]
        # Threads other than the main one: uvicorn installs no signal handlers there.
        self.threads = [threading.Thread(target=s.run, daemon=True) for s in self.servers]

    def start(self) -> Service:
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 30
        while not (all(s.started for s in self.servers) and self.state.batcher is not None):
            assert time.monotonic() < deadline, self.state.load_error
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True
        for thread in self.threads:
            thread.join(15)

    def sample(self, name: str, **labels: str) -> float:
        return self.state.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    path = tiny_model(tmp_path_factory.mktemp("model") / "mean.onnx")
    settings = InferenceSettings(
        model_uri=str(path), api_token=TOKEN, instances=1, max_batch_size=1, body_timeout_s=30, busy_wait_ms=200
    )
    service = Service(settings).start()
    yield service
    service.stop()


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    """(status, body) over a fresh connection, raw: nothing between the test and the server."""
    head = {"Host": f"127.0.0.1:{port}", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    sock.sendall(f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body)
    answer = _read(sock)
    status = int(answer.split(b" ", 2)[1]) if answer else 0
    return status, answer.partition(b"\r\n\r\n")[2]


def _read(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def infer(port: int, headers: dict[str, str] | None = None):
    return request(port, "POST", "/v1/infer", JPEG, {"Content-Type": "image/jpeg", **AUTH, **(headers or {})})


def test_the_api_needs_its_token_and_an_allowed_host(service):
    assert infer(service.port)[0] == 200
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": TOKEN},
    ):
        status, body = infer(service.port, headers)
        assert status == 401 and b'"code":"unauthorized"' in body, headers
    status, body = infer(service.port, {"Host": "rebound.example:8080"})
    assert status == 421 and b'"field":"Host"' in body
    assert infer(service.port, {"Host": "inference.vidpipe.svc:8080"})[0] == 200  # the consumer's form
    refused = service.sample("inference_requests_total", endpoint="unmatched", status="401")
    assert refused >= 3, "refusals are counted"


def test_the_ops_port_serves_probes_and_metrics_only_and_the_api_none_of_them(service):
    assert request(service.ops_port, "GET", "/readyz")[0] == 200
    assert request(service.ops_port, "GET", "/healthz")[1] == b'{"status":"ok"}'
    assert b"inference_frames_total" in request(service.ops_port, "GET", "/metrics")[1]
    # What may scrape cannot infer: the API is not on this port, token or not.
    for path in ("/v1/infer", "/v1/infer/batch"):
        status, body = request(service.ops_port, "POST", path, JPEG, {"Content-Type": "image/jpeg", **AUTH})
        assert status == 404 and b'"code":"not_found"' in body
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"):
        assert request(service.port, "GET", path, headers=AUTH)[0] == 404, path


def test_a_declared_body_that_never_comes_holds_nothing_of_the_budget(service):
    budget = service.state.body_bytes
    held = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
        sock.sendall(
            f"POST /v1/infer/batch HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {BATCH_CONTENT_TYPE}\r\nContent-Length: {256 * 1024 * 1024}\r\n\r\n".encode()
        )
        held.append(sock)
    try:
        time.sleep(0.3)
        assert budget.in_use == 0, "nothing arrived, nothing is held"
        for _ in range(5):
            assert infer(service.port)[0] == 200  # others are served meanwhile
        half = encode_batch([JPEG] * 2)
        held[0].sendall(half[:300])
        time.sleep(0.3)
        assert budget.in_use == 300, "bytes are held as they arrive"
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while budget.in_use and time.monotonic() < deadline:
        time.sleep(0.05)
    assert budget.in_use == 0, "an abandoned body gives its bytes back"
    # Beyond the limit: refused at once, from the header, before any byte of the body.
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    sock.sendall(
        f"POST /v1/infer HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {256 * 1024 * 1024}\r\n\r\n".encode()
    )
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413 ") and b"body_too_large" in answer


def _abandon(port: int, path: str, body: bytes, content_type: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def _wait(check, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_frames_queued_for_a_client_that_left_are_dropped_not_run(service):
    batcher = service.state.batcher
    real = batcher._run_batch
    gate = threading.Event()
    runs: list[int] = []

    def held_run(items):
        runs.append(len(items))
        gate.wait(20)
        return real(items)

    dropped_before = service.sample("inference_abandoned_frames_total", stage="queue")
    gone_before = service.sample("inference_requests_total", endpoint="/v1/infer/batch", status="499")
    batcher._run_batch = held_run
    try:
        answer: list = []
        first = threading.Thread(target=lambda: answer.append(infer(service.port)))
        first.start()
        _wait(lambda: runs == [1], "the first frame on the model")
        leaving = _abandon(service.port, "/v1/infer/batch", encode_batch([JPEG] * 5), BATCH_CONTENT_TYPE)
        _wait(lambda: batcher.depth == 5, "the batch's five frames queued")
        leaving.close()
        _wait(
            lambda: service.sample("inference_abandoned_frames_total", stage="queue") == dropped_before + 5,
            "the five frames dropped",
        )
        assert batcher.depth == 0
        gate.set()
        first.join(20)
        assert answer and answer[0][0] == 200
        time.sleep(0.3)
        assert runs == [1], "the abandoned frames never reached the model"
        _wait(lambda: service.state.frames_in_flight.in_use == 0, "the frames' admission released")
        assert service.sample("inference_requests_total", endpoint="/v1/infer/batch", status="499") == gone_before + 1
    finally:
        gate.set()
        batcher._run_batch = real
    assert infer(service.port)[0] == 200


def test_frames_not_yet_decoded_for_a_client_that_left_are_skipped(service, monkeypatch):
    import inference_service.app as app_module

    real = app_module.decode_and_resize
    gate = threading.Event()
    decoded: list[int] = []

    def held_decode(*args, **kwargs):
        decoded.append(1)
        gate.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "decode_and_resize", held_decode)
    skipped_before = service.sample("inference_abandoned_frames_total", stage="decode")
    leaving = _abandon(service.port, "/v1/infer/batch", encode_batch([JPEG] * 6), BATCH_CONTENT_TYPE)
    _wait(lambda: decoded == [1], "the first frame decoding")
    leaving.close()
    time.sleep(0.3)  # the disconnect is noticed while the first frame decodes
    gate.set()
    _wait(
        lambda: service.sample("inference_abandoned_frames_total", stage="decode") == skipped_before + 5,
        "the five frames not decoded",
    )
    assert decoded == [1]
    monkeypatch.undo()
    _wait(lambda: service.state.frames_in_flight.in_use == 0 and service.state.body_bytes.in_use == 0, "released")
    assert infer(service.port)[0] == 200
