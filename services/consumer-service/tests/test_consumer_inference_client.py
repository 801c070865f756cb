"""What each answer of an inference endpoint means to the consumer, over real HTTP: only content codes
(400, 413, 415, 422) can blame frames; a wrong path, a refused token, a proxy, a redirect or anything
unexpected is an outage that names the likely fix; the API token goes out as a bearer token and never
into a message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consumer_service.inference_client import (
    BatchRefused,
    InferenceClient,
    InferenceFailed,
    InferenceUnavailable,
    classify_status,
)

TOKEN = "s3cret-token-value"


class Endpoint:
    """A real HTTP server standing in for inference or whatever is in front of it (a proxy, another app)."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict = {}
        self.headers: dict[str, str] = {}
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.seen.append((self.path, self.headers.get("Authorization")))
                body = json.dumps(endpoint.body).encode()
                self.send_response(endpoint.status)
                for name, value in endpoint.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, status: int, body: dict | None = None, **headers: str) -> None:
        self.status, self.body, self.headers = status, body or {}, headers


@pytest.fixture(scope="module")
def server() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def endpoint(server: Endpoint) -> Endpoint:
    server.seen.clear()
    return server


def error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def test_only_the_content_codes_can_blame_frames():
    assert {s for s in range(100, 600) if classify_status(s) == "content"} == {400, 413, 415, 422}
    assert [classify_status(s) for s in (401, 403, 404, 405, 421, 301, 418, 204)] == ["outage"] * 8
    assert (classify_status(503), classify_status(429), classify_status(500), classify_status(502)) == (
        "busy",
        "busy",
        "failed",
        "failed",
    )


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (404, "is CONSUMER_INFERENCE_URL right?"),
        (405, "is CONSUMER_INFERENCE_URL right?"),
        (401, "set CONSUMER_INFERENCE_TOKEN"),
        (403, "check CONSUMER_INFERENCE_TOKEN and any proxy"),
        (421, "host"),
        (418, "an answer the consumer does not expect"),
    ],
)
def test_answers_that_blame_no_frame_are_outages_that_name_the_fix(endpoint, status, hint):
    endpoint.answer(status, error("x", "nope"))
    client = InferenceClient(endpoint.url + "/wrong/prefix", 5)
    with pytest.raises(InferenceUnavailable) as raised:
        client.infer_batch([b"jpeg"])
    message = str(raised.value)
    assert raised.value.cause == f"http_{status}"
    assert message.startswith(f"HTTP {status} from {endpoint.url}/wrong/prefix/v1/infer/batch: ")
    assert hint in message


def test_a_refused_token_is_told_apart_from_a_missing_one_and_never_shown(endpoint):
    endpoint.answer(401, error("unauthorized", "bad token"))
    with pytest.raises(InferenceUnavailable, match="set CONSUMER_INFERENCE_TOKEN"):
        InferenceClient(endpoint.url, 5).infer_batch([b"jpeg"])
    with pytest.raises(InferenceUnavailable, match="refused the token") as raised:
        InferenceClient(endpoint.url, 5, TOKEN).infer_batch([b"jpeg"])
    assert TOKEN not in str(raised.value)
    assert endpoint.seen == [("/v1/infer/batch", None), ("/v1/infer/batch", f"Bearer {TOKEN}")]


def test_a_redirect_says_where_it_points(endpoint):
    endpoint.answer(308, location="https://inference.example/v1/infer/batch")
    with pytest.raises(InferenceUnavailable, match="redirected to https://inference.example") as raised:
        InferenceClient(endpoint.url, 5).infer_batch([b"jpeg"])
    assert raised.value.cause == "http_308"


def test_credentials_in_the_url_stay_out_of_the_message(endpoint):
    endpoint.answer(404, error("not_found", "unknown path"))
    url = endpoint.url.replace("http://", "http://user:pa55@")
    with pytest.raises(InferenceUnavailable) as raised:
        InferenceClient(url, 5).infer_batch([b"jpeg"])
    assert "pa55" not in str(raised.value) and "user" not in str(raised.value)


@pytest.mark.parametrize("status", [400, 413, 415, 422])
def test_content_codes_are_refusals_with_the_services_code(endpoint, status):
    endpoint.answer(status, error("malformed_batch", "bad"))
    with pytest.raises(BatchRefused) as raised:
        InferenceClient(endpoint.url, 5).infer_batch([b"jpeg"])
    assert (raised.value.code, raised.value.cause) == ("malformed_batch", f"http_{status}")


def test_busy_and_failing_services(endpoint):
    endpoint.answer(503, error("overloaded", "busy"))
    with pytest.raises(InferenceUnavailable) as raised:
        InferenceClient(endpoint.url, 5).infer_batch([b"jpeg"])
    assert raised.value.cause == "http_503"
    endpoint.answer(500, error("internal_error", "boom"))
    with pytest.raises(InferenceFailed):
        InferenceClient(endpoint.url, 5).infer_batch([b"jpeg"])


def test_nothing_listening_is_an_outage():
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    with pytest.raises(InferenceUnavailable) as raised:
        InferenceClient(f"http://127.0.0.1:{port}", 5).infer_batch([b"jpeg"])
    assert raised.value.cause == "unreachable"


def test_an_answer_with_results_is_read_in_index_order(endpoint):
    endpoint.answer(
        200,
        {
            "model_name": "m",
            "model_version": "1",
            "results": [{"index": 1, "detections": []}, {"index": 0, "error": {"code": "too_large"}}],
        },
    )
    answer = InferenceClient(endpoint.url, 5, TOKEN).infer_batch([b"a", b"b"])
    assert [item["index"] for item in answer.items] == [0, 1] and answer.model_name == "m"
