"""The consumer's batch isolation, without a service: which frames get results, which get dead letters
(with which code and how many attempts), and when the service itself is to blame (the canary: a frame
the service processed before, sent alone, refused too)."""

from __future__ import annotations

import pytest

from consumer_service.inference_client import BatchAnswer, BatchRefused, InferenceFailed, InferenceUnavailable
from consumer_service.isolation import BatchIsolator


class FakeService:
    """Answers detections for good frames; `poison` frames make the whole request fail (5xx),
    `refused` ones make it a 4xx, `item_errors` get a per-item error."""

    def __init__(self, poison=(), refused=(), item_errors=(), broken=False, flaky=0):
        self.poison, self.refused, self.item_errors = set(poison), set(refused), set(item_errors)
        self.broken, self.flaky = broken, flaky
        self.requests: list[list[bytes]] = []

    def infer(self, images: list[bytes]) -> BatchAnswer:
        self.requests.append(images)
        if self.flaky:
            self.flaky -= 1
            raise InferenceFailed("HTTP 500: transient")
        if self.broken or self.poison & set(images):
            raise InferenceFailed("HTTP 500: model run failed")
        if self.refused & set(images):
            raise BatchRefused("HTTP 413: too large", "too_large", 413)
        items = [
            {"index": i, "error": {"code": "too_large", "message": "declares 40000x40000"}}
            if image in self.item_errors
            else {"index": i, "detections": [], "label": image.decode()}
            for i, image in enumerate(images)
        ]
        return BatchAnswer("yolo", "v1", items)


class Canary:
    """The worker's canary, counted: None while the service works, else the error a good frame got."""

    def __init__(self, error: BaseException | None = None):
        self.error, self.calls = error, 0

    def __call__(self) -> BaseException | None:
        self.calls += 1
        return self.error


def isolator(service: FakeService, attempts: int = 2, canary=None) -> tuple[BatchIsolator, list[int]]:
    waits: list[int] = []
    return BatchIsolator(service.infer, waits.append, canary or Canary(), attempts), waits


FRAMES = [f"f{i}".encode() for i in range(8)]


def test_a_good_batch_is_one_request():
    service = FakeService()
    result = isolator(service)[0].run(FRAMES)
    assert [o.result["label"] for o in result.outcomes] == [f.decode() for f in FRAMES]
    assert (result.model_name, result.model_version, len(service.requests)) == ("yolo", "v1", 1)


def test_a_poison_frame_is_found_by_bisection_and_only_it_fails():
    service = FakeService(poison={b"f5"})
    run, waits = isolator(service, attempts=2)
    outcomes = run.run(FRAMES).outcomes
    failed = [i for i, o in enumerate(outcomes) if o.result is None]
    assert failed == [5]
    assert outcomes[5].code == "inference_failed" and "model run failed" in outcomes[5].reason
    # 2 tries of 8, then 2 of each half/quarter holding it, then 2 alone: attempts count every request it was in
    assert outcomes[5].attempts == 8
    assert all(o.result is not None for i, o in enumerate(outcomes) if i != 5)
    assert len(service.requests) <= 2 * 4 + 3  # logarithmic, not one request per frame
    assert waits  # failed tries back off before trying again


def test_two_poison_frames_in_different_halves():
    outcomes = isolator(FakeService(poison={b"f1", b"f6"}))[0].run(FRAMES).outcomes
    assert [i for i, o in enumerate(outcomes) if o.result is None] == [1, 6]


def test_a_refused_batch_is_split_at_once_and_the_code_kept():
    service = FakeService(refused={b"f2"})
    outcomes = isolator(service, attempts=3)[0].run(FRAMES).outcomes
    assert [(i, o.code) for i, o in enumerate(outcomes) if o.result is None] == [(2, "too_large")]
    assert service.requests[1] == FRAMES[:4]  # no second try of the refused batch


def test_per_item_errors_need_no_isolation():
    service = FakeService(item_errors={b"f3"})
    outcomes = isolator(service)[0].run(FRAMES).outcomes
    assert outcomes[3].result is None and outcomes[3].code == "too_large" and "40000x40000" in outcomes[3].reason
    assert len(service.requests) == 1


def test_a_transient_failure_is_retried_not_split():
    service = FakeService(flaky=1)
    outcomes = isolator(service, attempts=2)[0].run(FRAMES).outcomes
    assert all(o.result is not None for o in outcomes) and len(service.requests) == 2


def test_a_service_that_fails_on_a_known_good_frame_is_an_outage_not_the_frames_fault():
    service = FakeService(broken=True)
    run, _ = isolator(service, canary=Canary(InferenceFailed("HTTP 500: model run failed")))
    with pytest.raises(InferenceUnavailable, match="processed before"):
        run.run(FRAMES[:2])


def test_a_model_failing_on_every_frame_is_an_outage_even_when_reported_per_item():
    service = FakeService(item_errors={b"f0", b"f1"})
    original = service.infer

    def infer(images):
        answer = original(images)
        for item in answer.items:
            if "error" in item:
                item["error"]["code"] = "inference_failed"
        return answer

    run = BatchIsolator(infer, lambda n: None, Canary(InferenceFailed("HTTP 500")), 2)
    with pytest.raises(InferenceUnavailable):
        run.run(FRAMES[:2])
    assert BatchIsolator(infer, lambda n: None, Canary(), 2).run(FRAMES[:2]).outcomes[0].code == "inference_failed"


class Refusing:
    """A proxy, or a service of another version, that answers a content code to every request."""

    def __init__(self, status: int = 415):
        self.status, self.requests = status, 0

    def infer(self, images: list[bytes]) -> BatchAnswer:
        self.requests += 1
        raise BatchRefused(f"HTTP {self.status}: unsupported media type", "unsupported_media_type", self.status)


@pytest.mark.parametrize("status", [400, 413, 415, 422])
def test_a_content_code_for_every_request_is_an_outage_once_the_canary_is_refused_too(status):
    service, canary = Refusing(status), Canary(BatchRefused(f"HTTP {status}: refused", "x", status))
    with pytest.raises(InferenceUnavailable, match="processed before is refused too") as raised:
        BatchIsolator(service.infer, lambda n: None, canary, 2).run(FRAMES)
    assert raised.value.cause == f"http_{status}", "the retry metric's label says what the service answers"
    assert (service.requests, canary.calls) == (1, 1), "one request and one canary: no bisection of 16 requests"


def test_a_content_refusal_blames_frames_only_after_the_canary_passes_and_asks_it_once_per_batch():
    service, canary = FakeService(refused={b"f2", b"f6"}), Canary()
    outcomes = BatchIsolator(service.infer, lambda n: None, canary, 2).run(FRAMES).outcomes
    assert [(i, o.code) for i, o in enumerate(outcomes) if o.result is None] == [(2, "too_large"), (6, "too_large")]
    assert canary.calls == 1


def test_per_item_errors_blame_frames_only_after_the_canary_passes():
    service = FakeService(item_errors={b"f3"})
    with pytest.raises(InferenceUnavailable) as raised:
        isolator(service, canary=Canary(BatchRefused("HTTP 415: no", "x", 415)))[0].run(FRAMES)
    assert raised.value.cause == "http_415"
    canary = Canary()
    outcomes = isolator(FakeService(item_errors={b"f3"}), canary=canary)[0].run(FRAMES).outcomes
    assert outcomes[3].code == "too_large" and canary.calls == 1


def test_a_canary_lost_to_an_outage_is_that_outage():
    service = Refusing(400)
    canary = Canary(InferenceUnavailable("HTTP 401 from http://inference/v1/infer/batch: set the token", "http_401"))
    with pytest.raises(InferenceUnavailable) as raised:
        BatchIsolator(service.infer, lambda n: None, canary, 2).run(FRAMES[:1])
    assert raised.value.cause == "http_401" and "set the token" in str(raised.value)
