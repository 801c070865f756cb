"""HTTP client for the inference service's batch endpoint, and what each answer means for a retry.

- InferenceUnavailable: the service is down or overloaded (no connection, 503, 429). Nothing about
  the frames: wait and send the same batch again, as long as it takes.
- InferenceFailed: the service answered, but not with results (another 5xx, a timeout, an unreadable
  body). The frames may be the cause: a few more tries, then the batch is split to find out.
- BatchRefused: the service refused the request (4xx). The frames are the cause: split at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch


class InferenceUnavailable(RuntimeError):
    """An outage: retry the same batch with backoff."""


class InferenceFailed(RuntimeError):
    """The service answered without results; if it repeats, the frames may be why."""

    code = "inference_failed"


class BatchRefused(RuntimeError):
    """The service rejected the request itself (4xx): retrying the same bytes will not help."""

    def __init__(self, message: str, code: str = "inference_refused"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BatchAnswer:
    model_name: str
    model_version: str
    items: list[dict[str, Any]]  # per image: detections..., or {"error": {...}}


class InferenceClient:
    def __init__(self, base_url: str, timeout_s: float):
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def infer_batch(self, images: list[bytes]) -> BatchAnswer:
        try:
            response = self._client.post(
                "/v1/infer/batch", content=encode_batch(images), headers={"Content-Type": BATCH_CONTENT_TYPE}
            )
        except httpx.TimeoutException as exc:  # the service took the request but did not finish it
            raise InferenceFailed(f"{type(exc).__name__}: no answer within the timeout") from None
        except httpx.HTTPError as exc:  # refused, reset, DNS: nothing reached the model
            raise InferenceUnavailable(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status in (503, 429):
            raise InferenceUnavailable(f"HTTP {status}: {_error(response)[1]}")
        if status >= 500:
            raise InferenceFailed(f"HTTP {status}: {_error(response)[1]}")
        if status >= 400:
            code, message = _error(response)
            raise BatchRefused(f"HTTP {status}: {message}", code or "inference_refused")
        try:
            body = response.json()
            items = sorted(body["results"], key=lambda r: r["index"])
            answer = BatchAnswer(str(body["model_name"]), str(body["model_version"]), items)
        except (ValueError, KeyError, TypeError) as exc:
            raise InferenceFailed(f"unreadable answer from inference: {exc!r}") from None
        if len(answer.items) != len(images):
            raise InferenceFailed(f"inference answered {len(answer.items)} results for {len(images)} images")
        return answer


def _error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from the service's error body, or ("", the start of whatever it sent)."""
    try:
        error = response.json()["error"]
        return str(error.get("code") or ""), str(error.get("message"))[:300]
    except Exception:
        return "", response.text[:200]
