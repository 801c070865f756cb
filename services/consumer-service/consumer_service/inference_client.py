"""HTTP client for the inference service's batch endpoint, and what each answer means for a retry.

What an answer says about the frames decides what happens to them:
- InferenceUnavailable: an outage; nothing about the frames. No connection, 503 or 429, and every answer
  that means the request never reached a working model: 401/403 (token, proxy), 404/405 (a wrong path in
  CONSUMER_INFERENCE_URL), 421 (host name), redirects and any status not named here. The same batch is
  sent again with backoff for as long as it takes, never dead-lettered; `cause` labels the retry metric
  and the message says the likely fix.
- InferenceFailed: the service answered, but not with results (another 5xx, a timeout, an unreadable
  body). The frames may be the cause: a few more tries, then the batch is split to find out.
- BatchRefused: a content code (400, 413, 415, 422): the service says the request's content is wrong.
  A proxy, or a service of another version during a rollout, can answer these to every request, so no
  frame is blamed before a frame the service processed before still gets a result (isolation.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from vidpipe import tracing
from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch

BATCH_PATH = "/v1/infer/batch"
# The only statuses that blame the request's content (and so, once the canary passes, its frames).
CONTENT_STATUSES = frozenset({400, 413, 415, 422})
# The service is there but busy or starting: wait.
BUSY_STATUSES = frozenset({429, 503})


class InferenceUnavailable(RuntimeError):
    """An outage: retry the same batch with backoff. `cause` is the retry metric's label."""

    def __init__(self, message: str, cause: str = "unreachable"):
        super().__init__(message)
        self.cause = cause


class InferenceFailed(RuntimeError):
    """The service answered without results; if it repeats, the frames may be why."""

    code = "inference_failed"
    cause = "failed"


class BatchRefused(RuntimeError):
    """The service refused the request's content (400, 413, 415, 422): the same bytes will not do better."""

    def __init__(self, message: str, code: str = "inference_refused", status: int = 0):
        super().__init__(message)
        self.code = code
        self.cause = f"http_{status}" if status else "refused"


@dataclass(frozen=True)
class BatchAnswer:
    model_name: str
    model_version: str
    items: list[dict[str, Any]]  # per image: detections..., or {"error": {...}}


def outage_hint(status: int, token_set: bool, location: str | None = None) -> str:
    """The likely fix for an answer that is no verdict on the frames (pure; the log and /healthz say it)."""
    if status == 401:
        if token_set:
            return "the service refused the token: is CONSUMER_INFERENCE_TOKEN the service's current API token?"
        return "the service wants an API token: set CONSUMER_INFERENCE_TOKEN (or _FILE, _SECRET_ARN)"
    if status == 403:
        return "forbidden: check CONSUMER_INFERENCE_TOKEN and any proxy or policy in front of inference"
    if status in (404, 405):
        return (
            f"is CONSUMER_INFERENCE_URL right? It is the inference service's base URL (the consumer adds {BATCH_PATH})"
        )
    if status == 421:
        return "the service does not serve this host name: is CONSUMER_INFERENCE_URL's host one it allows?"
    if 300 <= status < 400:
        return f"redirected to {location or '?'}: set CONSUMER_INFERENCE_URL to the service's own address"
    return "an answer the consumer does not expect: is CONSUMER_INFERENCE_URL the inference service?"


def classify_status(status: int) -> str:
    """What a non-200 status blames: "busy" (wait), "failed" (maybe the frames: try again, then split),
    "content" (the request's content, once a canary passes) or "outage" (the service, its address, a
    proxy or the token: wait, never blame a frame)."""
    if status in BUSY_STATUSES:
        return "busy"
    if status in CONTENT_STATUSES:
        return "content"
    if 500 <= status < 600:
        return "failed"
    return "outage"


class InferenceClient:
    def __init__(self, base_url: str, timeout_s: float, token: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=headers)
        self.token_set = bool(token)

    def close(self) -> None:
        self._client.close()

    def infer_batch(self, images: list[bytes], links: Sequence[Link] = ()) -> BatchAnswer:
        """links: the trace contexts of the batch's frames (the request is a child of the current span)."""
        url = self._client.base_url
        with tracing.tracer().start_as_current_span(
            f"POST {BATCH_PATH}",
            kind=SpanKind.CLIENT,
            links=links,
            attributes={
                "http.request.method": "POST",
                "url.path": BATCH_PATH,
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
                "messaging.batch.message_count": len(images),
            },
        ) as span:
            return self._infer_batch(images, span)

    def _infer_batch(self, images: list[bytes], span: Span) -> BatchAnswer:
        headers = tracing.inject_http({"Content-Type": BATCH_CONTENT_TYPE})
        try:
            response = self._client.post(BATCH_PATH, content=encode_batch(images), headers=headers)
        except httpx.TimeoutException as exc:  # the service took the request but did not finish it
            raise InferenceFailed(f"{type(exc).__name__}: no answer within the timeout") from None
        except httpx.HTTPError as exc:  # refused, reset, DNS: nothing reached the model
            raise InferenceUnavailable(f"{type(exc).__name__}: {exc}", "unreachable") from None
        status = response.status_code
        span.set_attribute("http.response.status_code", status)
        if status != 200:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            code, message = _error(response)
            kind = classify_status(status)
            if kind == "busy":
                raise InferenceUnavailable(f"HTTP {status}: {message}", f"http_{status}")
            if kind == "failed":
                raise InferenceFailed(f"HTTP {status}: {message}")
            if kind == "content":
                raise BatchRefused(f"HTTP {status}: {message}", code or "inference_refused", status)
            url = response.request.url
            where = f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}{url.path}"  # no userinfo
            hint = outage_hint(status, self.token_set, response.headers.get("location"))
            raise InferenceUnavailable(f"HTTP {status} from {where}: {hint} ({message[:120]})", f"http_{status}")
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
