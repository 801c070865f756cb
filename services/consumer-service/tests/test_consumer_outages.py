"""The consumer against an inference endpoint that refuses everything (a token it lacks, a proxy, a service
of another version): no frame is dead-lettered, the wait is counted by cause, /healthz turns unhealthy with
the likely fix, and once the endpoint answers again every frame gets its result. Only once a frame the
service processed before still gets a result is a refused frame dead-lettered (the canary)."""

from __future__ import annotations

import pytest
from consumer_support import Record, StandIn, advance_until, make_worker, metric

from consumer_service.inference_client import InferenceClient
from consumer_service.reference import REFERENCE_JPEG
from vidpipe.contract import Header, header_dict

TOKEN = "the-api-token"


def variant(n: int) -> bytes:
    """Another valid 64x64 JPEG: the reference with a comment segment, so that frames differ in bytes."""
    text = f"frame {n}".encode()
    return REFERENCE_JPEG[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + REFERENCE_JPEG[2:]


@pytest.fixture(scope="module")
def server():
    server = StandIn()
    yield server
    server.close()


@pytest.fixture
def stand_in(server):
    return server.reset()


def retries(worker, cause: str) -> float:
    return metric(worker, "consumer_retries_total", dependency="inference", cause=cause)


def test_a_401_is_waited_out_never_dead_lettered_and_healthz_names_the_token(tmp_path, stand_in):
    stand_in.mode = 401
    worker = make_worker(tmp_path, stand_in.url, unhealthy_after_s=0.2)
    worker._start_batch([Record(0, variant(0)), Record(1, variant(1))])
    advance_until(worker, lambda: retries(worker, "http_401") >= 3 and not worker.heartbeat.alive)
    assert "HTTP 401" in worker.heartbeat.unhealthy_reason
    assert "set CONSUMER_INFERENCE_TOKEN" in worker.heartbeat.unhealthy_reason
    assert worker.producer.sent == [] and worker.consumer.commits == [] and worker.counts.dead_lettered == 0

    stand_in.mode = "ok"  # the token is set right, or the proxy fixed
    advance_until(worker, lambda: len(worker.producer.sent) == 2)
    assert {m["topic"] for m in worker.producer.sent} == {"results"}
    worker.producer.deliver(None)
    advance_until(worker, lambda: worker.consumer.commits)
    assert worker.heartbeat.alive and worker.counts.dead_lettered == 0
    worker.close()


def test_the_token_goes_out_as_a_bearer_token(tmp_path, stand_in):
    seen = []
    client = InferenceClient(stand_in.url, 5, TOKEN)
    original = client._client.post

    def post(*args, **kwargs):
        response = original(*args, **kwargs)
        seen.append(response.request.headers.get("authorization"))
        return response

    client._client.post = post
    worker = make_worker(tmp_path, stand_in.url, client=client)
    worker._start_batch([Record(0)])
    advance_until(worker, lambda: len(worker.producer.sent) == 1)
    assert seen == [f"Bearer {TOKEN}"]
    worker.close()


def test_a_content_code_for_every_request_is_an_outage_once_the_canary_is_refused(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url, unhealthy_after_s=0.2)
    worker._start_batch([Record(0, variant(0))])
    advance_until(worker, lambda: len(worker.producer.sent) == 1)  # the service knows this frame now
    worker.producer.deliver(None)

    stand_in.mode = 415  # a rollout's new version, or a proxy, refuses what this consumer sends
    worker._start_batch([Record(n, variant(n)) for n in range(1, 9)])
    advance_until(worker, lambda: retries(worker, "http_415") >= 2 and not worker.heartbeat.alive)
    assert worker.counts.dead_lettered == 0 and len(worker.producer.sent) == 1
    assert "processed before is refused too" in worker.heartbeat.unhealthy_reason
    assert max(stand_in.requests) == 8 and 1 in stand_in.requests, "whole batches and canaries: no bisection"
    assert all(n in (1, 8) for n in stand_in.requests)

    stand_in.mode = "ok"
    advance_until(worker, lambda: len(worker.producer.sent) == 9)
    assert worker.counts.dead_lettered == 0
    worker.close()


def test_before_any_frame_got_a_result_the_reference_image_is_the_canary(tmp_path, stand_in):
    stand_in.mode = 400
    worker = make_worker(tmp_path, stand_in.url)
    worker._start_batch([Record(0, variant(0))])
    advance_until(worker, lambda: retries(worker, "http_400") >= 2)
    assert worker.counts.dead_lettered == 0 and worker.producer.sent == []
    stand_in.mode = "ok"
    advance_until(worker, lambda: len(worker.producer.sent) == 1)
    worker.close()


def test_a_frame_the_service_refuses_while_the_canary_passes_is_dead_lettered_alone(tmp_path, stand_in):
    worker = make_worker(tmp_path, stand_in.url)
    frames = [variant(n) for n in range(4)]
    stand_in.refuse_items = {frames[2]}
    worker._start_batch([Record(n, frame) for n, frame in enumerate(frames)])
    advance_until(worker, lambda: len(worker.producer.sent) == 4)
    topics = [m["topic"] for m in worker.producer.sent]
    assert sorted(topics) == ["dlq", "results", "results", "results"]
    letter = next(m for m in worker.producer.sent if m["topic"] == "dlq")
    headers = header_dict(letter["headers"])
    assert (headers[Header.SEQ], headers[Header.ERROR_CODE]) == ("2", "not_a_jpeg")
    assert stand_in.requests == [4, 1], "the batch, then the canary alone"
    worker.close()
