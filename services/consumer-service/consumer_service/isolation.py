"""Which frames of a batch can the inference service not process? Pure logic: the transport comes in
as callables, so every path is unit-tested without a service.

A batch that the service refuses for its content (400, 413, 415, 422), or that keeps failing (5xx,
timeouts) for `attempts` tries, is split in halves until the frames at fault stand alone; each of those
becomes one dead letter with the reason and the number of requests it was part of, and every other frame
gets its result. No frame is blamed before a canary passes: a frame the service processed before, sent
alone, still gets a result. If it does not, the service, its path or a proxy is at fault, not the frames:
an outage (InferenceUnavailable), retried, never dead-lettered. A content refusal or per-item error is
checked once per batch, before any split (so a proxy refusing every request costs one extra request, not
a bisection); a failure (5xx) is checked where a single frame would be blamed.
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


@dataclass
class _Run:
    model: tuple[str, str] = ("", "")
    content_checked: bool = False  # a canary passed after a content refusal in this batch


class BatchIsolator:
    def __init__(
        self,
        infer: Callable[[list[bytes]], BatchAnswer],
        backoff: Callable[[int], None],
        canary: Callable[[], BaseException | None],
        attempts: int = 2,
    ):
        """infer: one request (outages already waited out); backoff(n): wait before try n+1;
        canary(): None when the service still answers a frame it processed before with a result,
        else the error it got instead."""
        self.infer = infer
        self.backoff = backoff
        self.canary = canary
        self.attempts = attempts

    def run(self, images: list[bytes]) -> Isolated:
        run = _Run()
        outcomes = self._isolate(images, 0, run)
        return Isolated(run.model[0], run.model[1], outcomes)

    def _isolate(self, images: list[bytes], prior: int, run: _Run) -> list[ItemOutcome]:
        tries = 0
        while True:
            tries += 1
            try:
                answer = self.infer(images)
            except BatchRefused as exc:
                self._check_content(run, exc.cause, str(exc))
                failure: BatchRefused | InferenceFailed = exc
                could_be_service = False
            except InferenceFailed as exc:
                if tries < self.attempts:
                    self.backoff(tries)
                    continue
                failure, could_be_service = exc, True
            else:
                if answer.model_name:
                    run.model = (answer.model_name, answer.model_version)
                outcomes = [item_outcome(item, prior + tries) for item in answer.items]
                refused = [o for o in outcomes if o.result is None]
                if any(o.code == InferenceFailed.code for o in refused):
                    # The model failed on a frame: it may be failing on every frame.
                    self._check_failure("inference also fails on a frame it processed before")
                elif refused:
                    self._check_content(run, "item_error", refused[0].reason)
                return outcomes
            if len(images) > 1:
                half = len(images) // 2
                return self._isolate(images[:half], prior + tries, run) + self._isolate(
                    images[half:], prior + tries, run
                )
            if could_be_service:
                self._check_failure(f"inference also fails on a frame it processed before: {failure}")
            return [ItemOutcome(None, failure.code, str(failure), prior + tries)]

    def _check_content(self, run: _Run, cause: str, refusal: str) -> None:
        """Before frames are blamed for a content refusal: does the service still take a good frame?"""
        if run.content_checked:
            return
        error = self.canary()
        if error is not None:
            raise InferenceUnavailable(
                f"{refusal[:200]}, and a frame inference processed before is refused too ({str(error)[:200]}): "
                "the service, its path or a proxy is at fault, not the frames (a rollout's version skew?)",
                getattr(error, "cause", None) or cause,
            )
        run.content_checked = True

    def _check_failure(self, message: str) -> None:
        error = self.canary()
        if error is not None:
            raise InferenceUnavailable(f"{message} ({str(error)[:200]})", getattr(error, "cause", None) or "failing")


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
