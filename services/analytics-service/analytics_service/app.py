"""HTTP edge of the analytics service: the live view (page and JSON API), and the ops app (probes, metrics).

The worker (Kafka) runs on a thread of this process, started and stopped with the live view's app. The
live view shows what it is for and no more: the streams this replica analyzes, each with its latest
frame. The page draws on the archived JPEG in the browser: /api/streams/{id}/frame streams the archive's
bytes of that stream's latest (or a recent) analyzed frame, unchanged; no other frame of the archive is
reachable. The API and the page sit behind vidpipe.http_edge's Host allow-list and, when
ANALYTICS_API_TOKEN is set, its token: a browser opens /?token=<token> once and gets a session cookie.
The stream registry's control API (/api/registry/..., analytics_service.control) sits behind the same edge.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from vidpipe.contract import JPEG_CONTENT_TYPE, MAX_INT_HEADER, check_stream_id
from vidpipe.health import Heartbeat
from vidpipe.http_api import ApiError, api_app, error_response
from vidpipe.http_edge import ASGIApp, EdgeGuard, EdgeSettings, error_document, guard_options, json_probe, ops_app
from vidpipe.storage import Storage, frame_key, is_outage

from .control import RegistryControl, add_registry_routes
from .metrics import AnalyticsMetrics
from .view import LiveView, StreamView
from .worker import AnalyticsWorker

log = logging.getLogger(__name__)

# The page loads only its own script and style, and fetches only this origin: no inline code, no CDN.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# The static files of the page, by URL path (a fixed list: no request path ever reaches the file system).
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/live/live.js": ("live.js", "text/javascript; charset=utf-8"),
    "/live/live.css": ("live.css", "text/css; charset=utf-8"),
    "/live/icon.svg": ("icon.svg", "image/svg+xml"),
}
# The browser session's cookie (set by GET /?token=...): HttpOnly, SameSite=Strict.
SESSION_COOKIE = "vidpipe_live"


@dataclass
class ServiceState:
    view: LiveView
    metrics: AnalyticsMetrics
    heartbeat: Heartbeat
    storage: Storage | None = None
    worker: AnalyticsWorker | None = None
    registry: RegistryControl | None = None  # the control API (None: ANALYTICS_REGISTRY=false)
    on_worker_exit: Callable[[], None] | None = None  # e.g. stop the server when the worker dies
    worker_error: str | None = None
    join_timeout_s: float = 30.0
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start_worker(self) -> None:
        if self.worker is None:
            return
        self._thread = threading.Thread(target=self._run_worker, name="analytics-worker", daemon=True)
        self._thread.start()

    def _run_worker(self) -> None:
        assert self.worker is not None
        try:
            self.worker.run()
        except BaseException as exc:
            self.worker_error = f"the worker failed: {exc!r}"[:300]
            self.heartbeat.unhealthy_reason = self.worker_error
            log.exception("the worker failed")
        finally:
            if self.on_worker_exit is not None:
                self.on_worker_exit()

    def stop_worker(self) -> None:
        if self.worker is None or self._thread is None:
            return
        self.worker.stop()
        self._thread.join(self.join_timeout_s)

    @property
    def worker_alive(self) -> bool:
        return self.worker is None or (self._thread is not None and self._thread.is_alive())


def _stream_id(value: str) -> str:
    try:
        return check_stream_id(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_stream_id", str(exc), "stream_id") from None


def frame_url(state: ServiceState, view: StreamView) -> str | None:
    if state.storage is None:
        return None
    return f"/api/streams/{view.stream_id}/frame?epoch={view.epoch}&seq={view.seq}"


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("analytics_service") / "live"
    return {path: (folder.joinpath(name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}


def create_app(state: ServiceState, settings: EdgeSettings | None = None, token: str | None = None) -> FastAPI:
    """The live view's app. settings: the edge's (allowed hosts, OpenAPI); token: the bearer token the
    API and the page require (None: none, with a warning)."""
    files = _static_files()
    settings = settings or EdgeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_worker()
        yield
        # SIGTERM: the worker delivers what it analyzed, commits and leaves the group.
        await run_in_threadpool(state.stop_worker)

    app = api_app("vidpipe analytics", lifespan, settings.openapi)
    app.state.service = state

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", []) if p not in ("path", "query")]
        return error_response(422, "invalid_request", str(first.get("msg", "invalid request")), ".".join(loc) or None)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", type(exc).__name__)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith(("/api/streams", "/api/registry")):
            response.headers["Cache-Control"] = "no-store"  # polled: always the latest
        return response

    def static(path: str) -> Callable[[], Awaitable[Response]]:
        body, kind = files[path]

        async def serve() -> Response:
            return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

        return serve

    for path in STATIC:
        app.add_api_route(path, static(path), methods=["GET"], include_in_schema=path == "/", summary="Live view")

    app.add_middleware(EdgeGuard, **guard_options("analytics", settings, token, login_cookie=SESSION_COOKIE))

    @app.get("/api/streams", summary="Every stream this replica analyzes: latest seq, rate, latency, counts")
    async def streams() -> dict[str, Any]:
        return {"streams": [view.summary() for view in state.view.streams()]}

    @app.get("/api/streams/{stream_id}/latest", summary="A stream's latest frame: tracks, lines, zones, counts")
    async def latest(stream_id: str) -> dict[str, Any]:
        view = state.view.latest(_stream_id(stream_id))
        if view is None:
            raise ApiError(404, "unknown_stream", f"no results of stream {stream_id!r} here yet", "stream_id")
        return {
            **view.summary(),
            "width": view.width,
            "height": view.height,
            "processed_ts_us": view.processed_ts_us,
            "frame_url": frame_url(state, view),
            "tracks": [
                {"track_id": t.track_id, "class_id": t.class_id, "label": t.label, "score": t.score, "box": list(t.box)}
                for t in view.tracks
            ],  # fmt: skip
            **state.view.regions(view.stream_id),
        }

    @app.get(
        "/api/streams/{stream_id}/frame",
        summary="A stream's latest analyzed frame (or a recent one, by epoch and seq): the archive's JPEG unchanged",
        response_model=None,
        responses={200: {"content": {JPEG_CONTENT_TYPE: {}}}, 404: {}},
    )
    async def frame(
        stream_id: str,
        epoch: Annotated[int | None, Query(ge=0, le=MAX_INT_HEADER, description="FrameResult.epoch")] = None,
        seq: Annotated[int | None, Query(ge=0, le=MAX_INT_HEADER, description="FrameResult.seq")] = None,
    ) -> Response:
        stream = _stream_id(stream_id)
        if state.storage is None:
            raise ApiError(404, "no_archive", "ANALYTICS_ARCHIVE_URI is not set: no frames to show")
        # Only frames this replica analyzed lately: the key is built from what the worker recorded.
        ref = state.view.recent_frame(stream, epoch, seq)
        if ref is None:
            if state.view.latest(stream) is None:
                raise ApiError(404, "unknown_stream", f"no results of stream {stream_id!r} here", "stream_id")
            raise ApiError(404, "frame_not_recent", "that frame is not among the stream's latest analyzed", "seq")
        key = frame_key(stream, ref.epoch, ref.capture_ts_us, ref.seq)
        storage = state.storage
        try:
            body = await run_in_threadpool(storage.get, key)
        except Exception as exc:
            if _missing(exc):
                raise ApiError(404, "frame_not_found", "the frame is not in the archive (yet)") from None
            if is_outage(exc):
                raise ApiError(503, "archive_unavailable", f"the archive is unavailable: {exc}"[:300]) from None
            raise
        return Response(body, media_type=JPEG_CONTENT_TYPE)  # Cache-Control: no-store, as all of /api/streams

    add_registry_routes(app, state.registry)
    return app


def _missing(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return True
    response = getattr(exc, "response", None)  # botocore's ClientError
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        return code in ("NoSuchKey", "404", "NotFound")
    return False


def create_ops_app(state: ServiceState) -> ASGIApp:
    """/healthz (the worker makes progress), /readyz (it joined its consumer group) and /metrics, for
    the ops port: probes and Prometheus reach these, never the live view."""

    def healthz() -> tuple[int, Any]:
        if not state.worker_alive:
            return 503, error_document("worker_stopped", state.worker_error or "the worker stopped")
        if not state.heartbeat.alive:
            return 503, error_document(
                "unhealthy", state.heartbeat.unhealthy_reason or "the worker made no progress recently"
            )
        return 200, {"status": "ok"}

    def readyz() -> tuple[int, Any]:
        if not (state.worker_alive and state.heartbeat.ready and state.heartbeat.alive):
            return 503, error_document("not_ready", "the worker has not joined its consumer group")
        return 200, {"status": "ready"}

    async def metrics() -> tuple[int, bytes, str]:
        return 200, generate_latest(state.metrics.registry), CONTENT_TYPE_LATEST

    def stream_count() -> tuple[int, Any]:
        """How many streams the registry holds: the publishers' scaling rule reads `enabled` (KEDA's
        metrics-api scaler), on this port because it carries no token and only counts."""
        if state.registry is None:
            return 404, error_document("no_registry", "this service does not follow the stream registry")
        if not state.registry.reads.ready:
            return 503, error_document("registry_unavailable", "the stream registry is not read yet")
        streams = state.registry.reads.snapshot()
        return 200, {"enabled": sum(d.enabled for d in streams.values()), "total": len(streams)}

    return ops_app(
        {
            "/healthz": json_probe(healthz),
            "/readyz": json_probe(readyz),
            "/metrics": metrics,
            "/streams/count": json_probe(stream_count),
        }
    )
