"""HTTP edge of the inference service. The core (preprocess, batcher, decoders) knows no HTTP."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager

import numpy as np

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from vidpipe.contract import BATCH_CONTENT_TYPE, JPEG_CONTENT_TYPE, ContractError, decode_batch

from .batcher import BatcherClosed, DynamicBatcher, QueueFull
from .errors import ApiError, JSONResponse, error_response
from .metrics import ServiceMetrics
from .model import LoadedModel, load_model
from .preprocess import ImageError, InputBuffer, PreparedImage, decode_and_resize
from .settings import InferenceSettings

log = logging.getLogger(__name__)

IMAGE_TYPES = (JPEG_CONTENT_TYPE, "image/png")


class ModelRunner:
    """Fills the reusable input tensor and runs the model (on the batcher's worker thread);
    decoding the outputs happens in finish(), on the batcher's second thread."""

    def __init__(self, model: LoadedModel, max_batch: int):
        self.model = model
        self.capacity = model.input.fixed_batch or max_batch
        self.buffer = InputBuffer(model.input, self.capacity)

    def warm_up(self) -> None:
        """One run at the largest batch, so onnxruntime allocates its memory at start-up, not
        under the first full batch (memory stays flat afterwards) and no request pays for it."""
        self.model.run(self.buffer.blank())

    def run(self, images: list[PreparedImage]) -> list[dict[str, np.ndarray]]:
        chunks = []
        for start in range(0, len(images), self.capacity):
            chunks.append(self.model.run(self.buffer.fill(images[start : start + self.capacity])))
        return chunks

    def finish(self, images: list[PreparedImage], chunks: list[dict[str, np.ndarray]]) -> list[dict]:
        results: list[dict] = []
        for chunk_index, outputs in enumerate(chunks):
            chunk = images[chunk_index * self.capacity : (chunk_index + 1) * self.capacity]
            for index, image in enumerate(chunk):
                decoded = self.model.decoder.decode(outputs, index, image.width, image.height)
                results.append({"width": image.width, "height": image.height, **decoded})
        return results


class ServiceState:
    def __init__(self, settings: InferenceSettings):
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.model: LoadedModel | None = None
        self.load_error: str | None = None
        self.batcher: DynamicBatcher | None = None

    def load(self) -> None:
        try:
            model = load_model(self.settings)
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
        self.batcher = DynamicBatcher(
            runner.run,
            finish=runner.finish,
            max_batch=runner.capacity,
            max_delay_s=self.settings.max_queue_delay_ms / 1000.0,
            max_queue=self.settings.max_queue,
            on_batch=self.metrics.observe_batch,
        )
        self.model = model
        self.metrics.model_loaded.set(1)

    def require_ready(self) -> tuple[LoadedModel, DynamicBatcher]:
        if self.model is None or self.batcher is None:
            if self.load_error:
                raise ApiError(503, "model_unavailable", f"model failed to load: {self.load_error}")
            raise ApiError(503, "model_loading", "model is still loading", headers={"Retry-After": "2"})
        return self.model, self.batcher


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_content_length", f"Content-Length {declared[:20]!r} is not a number", "Content-Length")
        if int(declared) > limit:
            raise ApiError(413, "body_too_large", f"body of {declared} bytes exceeds the limit of {limit}", "body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"body exceeds the limit of {limit} bytes", "body")
        chunks.append(chunk)
    if size == 0:
        raise ApiError(400, "empty_body", "request body is empty; send the image bytes", "body")
    return b"".join(chunks)


def require_content_type(request: Request, allowed: tuple[str, ...]) -> None:
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given not in allowed:
        shown = given or "none"
        raise ApiError(415, "unsupported_media_type", f"Content-Type is {shown}; expected one of {', '.join(allowed)}", "Content-Type")


def _prepare_all(items, model: LoadedModel) -> list[PreparedImage | ImageError]:
    prepared: list[PreparedImage | ImageError] = []
    for item in items:
        try:
            prepared.append(decode_and_resize(item, model.input))
        except ImageError as exc:
            prepared.append(exc)
    return prepared


async def _infer(state: ServiceState, images: list[PreparedImage], batcher: DynamicBatcher) -> list[dict]:
    try:
        futures = batcher.submit(images)
    except QueueFull as exc:
        state.metrics.rejected.inc()
        raise ApiError(503, "overloaded", f"inference queue is full ({exc}); retry later", headers={"Retry-After": "1"}) from None
    except BatcherClosed:
        raise ApiError(503, "shutting_down", "service is shutting down", headers={"Retry-After": "1"}) from None
    finally:
        state.metrics.queue_depth.set(batcher.depth)
    return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))


def create_app(settings: InferenceSettings) -> FastAPI:
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load in the background so /healthz answers while a large model downloads.
        loader = threading.Thread(target=state.load, name="model-loader", daemon=True)
        loader.start()
        yield
        if state.batcher is not None:
            await run_in_threadpool(state.batcher.close)

    app = FastAPI(title="vidpipe inference", version="1", lifespan=lifespan, default_response_class=JSONResponse)
    app.state.service = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, "http_error", str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", [])) or None
        return error_response(422, "invalid_request", first.get("msg", "invalid request"), field)

    @app.middleware("http")
    async def _count(request: Request, call_next):
        response = await call_next(request)
        state.metrics.requests.labels(request.url.path, str(response.status_code)).inc()
        return response

    @app.get("/healthz", summary="Liveness: the process serves requests")
    async def healthz():
        if state.load_error:
            return error_response(503, "model_unavailable", f"model failed to load: {state.load_error}")
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded")
    async def readyz():
        model, _ = state.require_ready()
        return {"status": "ready", "model": model.name, "version": model.version}

    @app.get("/v1/model", summary="The loaded model: name, version, input shape, labels")
    async def model_info():
        model, _ = state.require_ready()
        return model.describe()

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        if state.batcher is not None:
            state.metrics.queue_depth.set(state.batcher.depth)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/infer",
        summary="Infer one image",
        openapi_extra={"requestBody": {"required": True, "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES}}},
    )
    async def infer_one(request: Request):
        model, batcher = state.require_ready()
        require_content_type(request, IMAGE_TYPES)
        body = await read_body(request, settings.max_image_bytes)
        started = time.perf_counter()
        prepared = (await run_in_threadpool(_prepare_all, [body], model))[0]
        if isinstance(prepared, ImageError):
            state.metrics.frame_errors.labels("undecodable").inc()
            raise ApiError(422, "undecodable_image", str(prepared), "body")
        result = (await _infer(state, [prepared], batcher))[0]
        return {"model_name": model.name, "model_version": model.version,
                "inference_ms": round((time.perf_counter() - started) * 1000, 2), **result}

    @app.post(
        "/v1/infer/batch",
        summary="Infer a batch of JPEGs (length-prefixed binary body; see the message contract)",
        openapi_extra={"requestBody": {"required": True, "content": {BATCH_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def infer_batch(request: Request):
        model, batcher = state.require_ready()
        require_content_type(request, (BATCH_CONTENT_TYPE,))
        limit = settings.max_request_items * (settings.max_image_bytes + 4)
        body = await read_body(request, limit)
        try:
            items = decode_batch(body, settings.max_request_items, settings.max_image_bytes)
        except ContractError as exc:
            raise ApiError(400, "malformed_batch", str(exc), "body") from None
        started = time.perf_counter()
        prepared = await run_in_threadpool(_prepare_all, items, model)
        good = [p for p in prepared if not isinstance(p, ImageError)]
        inferred = iter(await _infer(state, good, batcher)) if good else iter(())
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        results = []
        for index, item in enumerate(prepared):
            if isinstance(item, ImageError):
                state.metrics.frame_errors.labels("undecodable").inc()
                results.append({"index": index, "error": {"code": "undecodable_image", "message": str(item), "field": f"items[{index}]"}})
            else:
                results.append({"index": index, "inference_ms": elapsed_ms, **next(inferred)})
        return {"model_name": model.name, "model_version": model.version, "results": results}

    return app
