"""HTTP edge of the inference service. The core (preprocess, batcher, runner, decoders) knows no HTTP.

Two apps: the API (create_app: /v1/*, behind vidpipe.http_edge's Host allow-list and bearer token) and
the ops app (create_ops_app: /healthz, /readyz, /metrics), which __main__ serves on separate ports.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from vidpipe import tracing
from vidpipe.contract import BATCH_CONTENT_TYPE, JPEG_CONTENT_TYPE, ContractError, decode_batch
from vidpipe.http_api import ApiError, api_app, error_response
from vidpipe.http_edge import ASGIApp, EdgeGuard, Receive, error_document, guard_options, json_probe, ops_app

from .batcher import BatcherClosed, DynamicBatcher, QueueFull
from .budget import AsyncBudget, Budget, BudgetExhausted
from .metrics import ServiceMetrics
from .model import LoadedModel, load_model
from .preprocess import ImageError, ImageTooLarge, PreparedImage, decode_and_resize, one_line, read_header
from .request_count import RequestCounter
from .runner import InferenceFailure, InferenceResult, ModelRunner
from .serving import runtime_fields, serving_processes, worker_number
from .settings import InferenceSettings, queue_for
from .startup_gate import gate_for

log = logging.getLogger(__name__)

IMAGE_TYPES = (JPEG_CONTENT_TYPE, "image/png")


class ServiceState:
    def __init__(self, settings: InferenceSettings):
        self.settings = settings
        self.metrics = ServiceMetrics(worker_number())
        self.metrics.processes.set(serving_processes())
        self.model: LoadedModel | None = None
        self.load_error: str | None = None
        self.batcher: DynamicBatcher[PreparedImage, InferenceResult] | None = None
        # What all requests together may hold at once (see budget.py); waits end in 503 + Retry-After.
        self.wait_s = settings.busy_wait_ms / 1000.0
        self.body_bytes = AsyncBudget(settings.max_inflight_body_bytes, "request body bytes in flight")
        self.frames_in_flight = AsyncBudget(settings.max_queue or settings.max_request_items, "frames in flight")
        self.decode_pixels = Budget(settings.max_inflight_decode_pixels, "pixels being decoded")

    def load(self) -> None:
        try:
            model = load_model(self.settings, startup_gate=gate_for(self.settings))
        except Exception as exc:
            self.load_error = str(exc)
            log.error("model failed to load: %s", exc)
            return
        runner = ModelRunner(model, self.settings.max_batch_size)
        try:
            runner.warm_up()
        except Exception as exc:
            self.load_error = f"model failed its first run: {exc}"
            log.error(self.load_error)
            return
        queue = queue_for(self.settings, model.instances, runner.capacity)
        # Before the model is ready every request is refused, so growing the budget now is safe.
        self.frames_in_flight.capacity = queue
        log.info(
            "accepting up to %d frames in flight (%d instances, batches of %d)", queue, model.instances, runner.capacity
        )
        self.batcher = DynamicBatcher(
            runner.run,
            finish=runner.finish,
            max_batch=runner.capacity,
            max_delay_s=self.settings.max_queue_delay_ms / 1000.0,
            max_queue=queue,
            on_batch=self.metrics.observe_batch,
            workers=model.instances,
        )
        model.runtime.update(runtime_fields())
        self.model = model
        self.metrics.observe_runtime(model.runtime)
        self.metrics.model_loaded.set(1)

    def require_ready(self) -> tuple[LoadedModel, DynamicBatcher[PreparedImage, InferenceResult]]:
        if self.model is None or self.batcher is None:
            if self.load_error:
                raise ApiError(503, "model_unavailable", f"model failed to load: {self.load_error}")
            raise ApiError(503, "model_loading", "model is still loading", headers={"Retry-After": "2"})
        return self.model, self.batcher


class ClientGone(Exception):
    """The request's client disconnected: nothing more is done for it (499, which nobody receives)."""


class Abandonment:
    """Notices the client of a request disconnecting once its body is read (the ASGI receive channel
    then answers http.disconnect), so the request stops costing the service: frames not yet decoded
    are skipped, frames still queued for the model are dropped."""

    def __init__(self, receive: Receive):
        self.gone = threading.Event()  # read by the decoding thread
        self.task = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()

    def close(self) -> None:
        self.task.cancel()


def _overloaded(state: ServiceState, why: str) -> ApiError:
    state.metrics.rejected.inc()
    return ApiError(503, "overloaded", f"{why}; retry later", headers={"Retry-After": "1"})


async def read_body(request: Request, limit: int, state: ServiceState) -> tuple[bytearray, int]:
    """The body, within `limit` bytes, and the bytes it holds of the service's body budget (the caller
    releases them). The budget is taken as bytes arrive, never as declared: a request that declares a
    large Content-Length and sends nothing holds nothing. Waits while other requests' bodies fill the
    budget; 503 if that lasts."""
    declared = request.headers.get("content-length")
    expected: int | None = None
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(
                400, "bad_content_length", f"Content-Length {declared[:20]!r} is not a number", "Content-Length"
            )
        expected = int(declared)
        if expected > limit:
            raise ApiError(413, "body_too_large", f"body of {declared} bytes exceeds the limit of {limit}", "body")
    budget = state.body_bytes
    held = 0
    body = bytearray()
    try:
        async for chunk in request.stream():
            size = len(body) + len(chunk)
            if expected is not None and size > expected:
                raise ApiError(
                    400, "bad_content_length", f"body is longer than its Content-Length {expected}", "Content-Length"
                )
            if size > limit:
                raise ApiError(413, "body_too_large", f"body exceeds the limit of {limit} bytes", "body")
            if chunk:
                await budget.acquire(len(chunk), state.wait_s)
                held += len(chunk)
                body += chunk
    except BaseException as exc:
        budget.release(held)
        if isinstance(exc, BudgetExhausted):
            raise _overloaded(state, "request bodies in flight fill the service's memory budget") from None
        if isinstance(exc, ClientDisconnect):
            raise ClientGone() from None
        raise
    if expected is not None and len(body) != expected:
        budget.release(held)
        raise ApiError(400, "bad_content_length", f"body ended after {len(body)} of {expected} bytes", "Content-Length")
    if not body:
        budget.release(held)
        raise ApiError(400, "empty_body", "request body is empty; send the image bytes", "body")
    return body, held


def require_content_type(request: Request, allowed: tuple[str, ...]) -> None:
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given not in allowed:
        shown = given or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type is {shown}; expected one of {', '.join(allowed)}",
            "Content-Type",
        )


def _prepare_all(
    items: Sequence[bytes | bytearray | memoryview], model: LoadedModel, state: ServiceState, gone: threading.Event
) -> list[PreparedImage | ImageError]:
    """Per image: checked against the pixel budget from its header, then decoded while holding its
    pixels of the service-wide decode budget. BudgetExhausted (overload) escapes; image faults do not.
    Stops early (a shorter list) once the client is gone."""
    max_pixels = state.settings.max_pixels
    prepared: list[PreparedImage | ImageError] = []
    for item in items:
        if gone.is_set():
            break
        try:
            width, height = read_header(item, max_pixels)
            with state.decode_pixels.hold(width * height, state.wait_s):
                started = time.perf_counter()
                prepared.append(decode_and_resize(item, model.input, (width, height)))
                state.metrics.decode_seconds.observe(time.perf_counter() - started)
        except ImageError as exc:
            prepared.append(exc)
    return prepared


async def _prepare(
    state: ServiceState, items: Sequence[bytes | bytearray | memoryview], model: LoadedModel, watch: Abandonment
) -> list[PreparedImage | ImageError]:
    try:
        prepared = await run_in_threadpool(_prepare_all, items, model, state, watch.gone)
    except BudgetExhausted:
        raise _overloaded(state, "images being decoded fill the service's memory budget") from None
    if watch.gone.is_set():
        state.metrics.abandoned.labels("decode").inc(len(items) - len(prepared))
        state.metrics.abandoned.labels("queue").inc(sum(not isinstance(p, ImageError) for p in prepared))
        raise ClientGone()
    return prepared


async def _infer(
    state: ServiceState,
    images: list[PreparedImage],
    batcher: DynamicBatcher[PreparedImage, InferenceResult],
    watch: Abandonment,
) -> list[InferenceResult]:
    try:
        futures = batcher.submit(images)
    except QueueFull as exc:
        raise _overloaded(state, f"inference queue is full ({exc})") from None
    except BatcherClosed:
        raise ApiError(503, "shutting_down", "service is shutting down", headers={"Retry-After": "1"}) from None
    finally:
        state.metrics.queue_depth.set(batcher.depth)
    # return_exceptions: a frame dropped below comes back as its CancelledError, nothing left unretrieved.
    results = asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
    await asyncio.wait((results, watch.task), return_when=asyncio.FIRST_COMPLETED)
    if not results.done() and watch.gone.is_set():
        state.metrics.abandoned.labels("queue").inc(batcher.cancel(futures))
        state.metrics.queue_depth.set(batcher.depth)
        await results  # frames already in a running batch finish: their memory is held until then
        raise ClientGone()
    outcomes = await results
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if not isinstance(o, BaseException)]


class Unset:
    """create_app's default token: read it from the settings."""


UNSET = Unset()


def _admit(state: ServiceState, count: int) -> None:
    """Frames are admitted before they are decoded, so decoded frames waiting anywhere are bounded."""
    if not state.frames_in_flight.try_acquire(count):
        raise _overloaded(
            state, f"{state.frames_in_flight.in_use} frames in flight, limit {state.frames_in_flight.capacity}"
        )


_ERROR_METRIC = {
    "undecodable_image": "undecodable",
    "too_large": "too_large",
    "too_many_scans": "too_many_scans",  # a JPEG with more scans than its size allows (image_header)
    "inference_failed": "inference_failed",
}


def create_app(
    settings: InferenceSettings,
    token: str | None | Unset = UNSET,
    loaded: Callable[[ServiceState], None] | None = None,
) -> FastAPI:
    """The API app. token: the bearer token it requires; by default settings.resolve_token() (which
    reads a token file or secret now). loaded: for one of several serving processes (serving.py), the model
    loads before the app starts serving (before its first connection), and `loaded` is called then."""
    state = ServiceState(settings)
    if isinstance(token, Unset):
        token = settings.resolve_token()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if loaded is not None:
            await run_in_threadpool(state.load)
            loaded(state)
        else:
            # Load in the background so /healthz answers while a large model downloads.
            threading.Thread(target=state.load, name="model-loader", daemon=True).start()
        yield
        if state.batcher is not None:
            await run_in_threadpool(state.batcher.close)

    app = api_app("vidpipe inference", lifespan, settings.openapi)
    app.state.service = state

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, "http_error", str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(ClientGone)
    async def _client_gone(request: Request, exc: ClientGone) -> Response:
        # Nobody reads this answer; the status makes abandoned requests countable (inference_requests_total).
        return error_response(499, "client_disconnected", "the client disconnected before the answer")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> Response:
        # A bug, never an input's fault (inputs get 4xx above): still a JSON error, and logged.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"{type(exc).__name__}: {one_line(exc)}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first: Mapping[str, Any] = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", [])) or None
        return error_response(422, "invalid_request", first.get("msg", "invalid request"), field)

    # The guard first, the counter outside it: refused requests (401, 421) are counted too.
    app.add_middleware(EdgeGuard, **guard_options("inference", settings, token))
    app.add_middleware(
        RequestCounter, count=lambda endpoint, status: state.metrics.requests.labels(endpoint, str(status)).inc()
    )

    # Routes say response_model=None: their return annotations are for mypy, not response models (that
    # would validate and re-serialize every answer).
    @app.get("/v1/model", summary="The loaded model: name, version, input shape, labels", response_model=None)
    async def model_info() -> dict[str, Any]:
        model, _ = state.require_ready()
        return model.describe()

    @app.post(
        "/v1/infer",
        summary="Infer one image",
        response_model=None,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
            }
        },
    )
    async def infer_one(request: Request) -> dict[str, Any]:
        model, batcher = state.require_ready()
        require_content_type(request, IMAGE_TYPES)
        body, held = await read_body(request, settings.max_image_bytes, state)
        try:
            _admit(state, 1)
        except ApiError:
            state.body_bytes.release(held)
            raise
        watch = Abandonment(request.receive)
        try:
            started = time.perf_counter()
            try:
                prepared = (await _prepare(state, [body], model, watch))[0]
            finally:
                del body
                state.body_bytes.release(held)
            if isinstance(prepared, ImageError):
                state.metrics.frame_errors.labels(_ERROR_METRIC[prepared.code]).inc()
                raise ApiError(
                    413 if isinstance(prepared, ImageTooLarge) else 422, prepared.code, str(prepared), "body"
                )
            result = (await _infer(state, [prepared], batcher, watch))[0]
        finally:
            watch.close()
            state.frames_in_flight.release(1)
        if isinstance(result, InferenceFailure):
            state.metrics.frame_errors.labels("inference_failed").inc()
            raise ApiError(422, "inference_failed", result.message, "body")
        return {
            "model_name": model.name,
            "model_version": model.version,
            "request_ms": round((time.perf_counter() - started) * 1000, 2),
            **result,
        }

    @app.post(
        "/v1/infer/batch",
        summary="Infer a batch of JPEGs (length-prefixed binary body; see the message contract)",
        response_model=None,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {BATCH_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def infer_batch(request: Request) -> dict[str, Any]:
        model, batcher = state.require_ready()
        require_content_type(request, (BATCH_CONTENT_TYPE,))
        body, held = await read_body(request, settings.batch_body_limit, state)
        try:
            try:
                items = decode_batch(body, settings.max_request_items, settings.max_image_bytes)
            except ContractError as exc:
                raise ApiError(400, "malformed_batch", str(exc), "body") from None
            count = len(items)
            _admit(state, count)
        except BaseException:
            state.body_bytes.release(held)
            raise
        watch = Abandonment(request.receive)
        try:
            started = time.perf_counter()
            try:
                prepared = await _prepare(state, items, model, watch)
            finally:
                del items, body  # the body's memory goes back to the budget before inference
                state.body_bytes.release(held)
            good = [p for p in prepared if not isinstance(p, ImageError)]
            # FastAPI makes the request's server span itself, in the caller's trace (traceparent); the
            # batch's time in the queue and the model is this child of it.
            with tracing.tracer().start_as_current_span(
                "inference batch", attributes={"vidpipe.batch.size": len(good), "vidpipe.model.name": model.name}
            ) as span:
                done = await _infer(state, good, batcher, watch) if good else []
                # The model's own time (the queue not included), as each frame's result reports it.
                span.set_attribute(
                    "vidpipe.model_ms",
                    max(
                        (float(r.get("model_ms", 0.0)) for r in done if not isinstance(r, InferenceFailure)),
                        default=0.0,
                    ),
                )
            inferred = iter(done)
        finally:
            watch.close()
            state.frames_in_flight.release(count)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        results: list[dict[str, Any]] = []
        for index, item in enumerate(prepared):
            outcome = item if isinstance(item, ImageError) else next(inferred)
            if isinstance(outcome, ImageError):
                code, message = outcome.code, str(outcome)
            elif isinstance(outcome, InferenceFailure):
                code, message = "inference_failed", outcome.message
            else:
                results.append({"index": index, "request_ms": elapsed_ms, **outcome})
                continue
            state.metrics.frame_errors.labels(_ERROR_METRIC[code]).inc()
            results.append({"index": index, "error": {"code": code, "message": message, "field": f"items[{index}]"}})
        return {"model_name": model.name, "model_version": model.version, "results": results}

    return app


def create_ops_app(state: ServiceState) -> ASGIApp:
    """/healthz (alive: 503 once the model failed to load), /readyz (the model is loaded) and /metrics,
    for the ops port: probes and Prometheus reach these, never the API."""

    def healthz() -> tuple[int, Any]:
        if state.load_error:
            return 503, error_document("model_unavailable", f"model failed to load: {state.load_error}")
        return 200, {"status": "ok"}

    def readyz() -> tuple[int, Any]:
        try:
            model, _ = state.require_ready()
        except ApiError as exc:
            return exc.status, error_document(exc.code, exc.message)
        return 200, {"status": "ready", "model": model.name, "version": model.version}

    async def metrics() -> tuple[int, bytes, str]:
        if state.batcher is not None:
            state.metrics.queue_depth.set(state.batcher.depth)
        return 200, generate_latest(state.metrics.registry), CONTENT_TYPE_LATEST

    return ops_app({"/healthz": json_probe(healthz), "/readyz": json_probe(readyz), "/metrics": metrics})
