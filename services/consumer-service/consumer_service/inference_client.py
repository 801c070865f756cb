"""HTTP client for the inference service's batch endpoint."""
from __future__ import annotations

from dataclasses import dataclass

import httpx

from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch


class InferenceUnavailable(RuntimeError):
    """Worth retrying: the service is down, overloaded or failing."""


class BatchRefused(RuntimeError):
    """The service rejected the request itself (4xx): retrying the same bytes will not help."""


@dataclass(frozen=True)
class BatchAnswer:
    model_name: str
    model_version: str
    items: list[dict]  # per image: detections..., or {"error": {...}}


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
        except httpx.HTTPError as exc:
            raise InferenceUnavailable(f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise InferenceUnavailable(f"HTTP {response.status_code}: {_error_message(response)}")
        if response.status_code >= 400:
            raise BatchRefused(f"HTTP {response.status_code}: {_error_message(response)}")
        try:
            body = response.json()
            items = sorted(body["results"], key=lambda r: r["index"])
            answer = BatchAnswer(body["model_name"], body["model_version"], items)
        except (ValueError, KeyError, TypeError) as exc:
            raise InferenceUnavailable(f"unreadable response from inference: {exc!r}") from None
        if len(answer.items) != len(images):
            raise InferenceUnavailable(f"inference answered {len(answer.items)} results for {len(images)} images")
        return answer


def _error_message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except Exception:
        return response.text[:200]
