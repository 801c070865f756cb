"""Which frames of a batch can the inference service not process? Pure logic: the transport comes in
as callables, so every path is unit-tested without a service.

A batch that the service refuses (4xx), or that keeps failing (5xx, timeouts) for `attempts` tries, is
split in halves until the frames at fault stand alone; each of those becomes one dead letter with the
reason and the number of requests it was part of, and every other frame gets its result. Before a
single frame is blamed for a failure that could be the service's, a frame it processed recently is
sent alone: if that fails too the service is broken (an outage, retried), not the frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .inference_client import BatchAnswer, BatchRefused, InferenceFailed, InferenceUnavailable


@dataclass(frozen=True)
class ItemOutcome:
    """One frame's answer: `result` (the service's per-image document) or why there is none."""

    result: dict[str, Any] | None
    code: str = ""
    reason: str = ""
    attempts: int = 0


@dataclass(frozen=True)
class Isolated:
    model_name: str
    model_version: str
    outcomes: list[ItemOutcome]


class BatchIsolator:
    def __init__(
        self,
        infer: Callable[[list[bytes]], BatchAnswer],
        backoff: Callable[[int], None],
        service_works: Callable[[], bool],
        attempts: int = 2,
    ):
        """infer: one request (outages already waited out); backoff(n): wait before try n+1;
        service_works(): whether the service still answers a frame it processed before."""
        self.infer = infer
        self.backoff = backoff
        self.service_works = service_works
        self.attempts = attempts

    def run(self, images: list[bytes]) -> Isolated:
        model: list[str] = ["", ""]
        outcomes = self._isolate(images, 0, model)
        return Isolated(model[0], model[1], outcomes)

    def _isolate(self, images: list[bytes], prior: int, model: list[str]) -> list[ItemOutcome]:
        tries = 0
        while True:
            tries += 1
            try:
                answer = self.infer(images)
            except BatchRefused as exc:
                failure: BatchRefused | InferenceFailed = exc
                could_be_service = False
            except InferenceFailed as exc:
                if tries < self.attempts:
                    self.backoff(tries)
                    continue
                failure, could_be_service = exc, True
            else:
                if answer.model_name:
                    model[:] = [answer.model_name, answer.model_version]
                outcomes = [item_outcome(item, prior + tries) for item in answer.items]
                # The service says the model failed on a frame: the model may be failing on every frame.
                if any(o.code == InferenceFailed.code for o in outcomes) and not self.service_works():
                    raise InferenceUnavailable("inference also fails on a frame it processed before")
                return outcomes
            if len(images) > 1:
                half = len(images) // 2
                return self._isolate(images[:half], prior + tries, model) + self._isolate(
                    images[half:], prior + tries, model
                )
            if could_be_service and not self.service_works():
                raise InferenceUnavailable(f"inference also fails on a frame it processed before: {failure}")
            return [ItemOutcome(None, failure.code, str(failure), prior + tries)]


def item_outcome(item: dict[str, Any], attempts: int) -> ItemOutcome:
    error = item.get("error")
    if error is None:
        return ItemOutcome(item, attempts=attempts)
    if not isinstance(error, dict):
        error = {"message": str(error)}
    return ItemOutcome(
        None,
        str(error.get("code") or "inference_refused"),
        f"inference refused the image: {error.get('message')}",
        attempts,
    )
