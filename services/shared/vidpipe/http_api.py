"""The FastAPI side of the HTTP edge: what the API apps of the services that serve HTTP (inference,
analytics) build their app and their errors from. Every error such an API returns is JSON, in
vidpipe.http_edge's one envelope: {"error": {"code", "message", "field"}}.

Only those services import this module: they depend on fastapi, the rest of the shared package does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from .http_edge import error_document


class JSONResponse(Response):
    """JSON serialized by orjson (numpy-free dicts of floats and lists: fast, compact)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """A request the API refuses or cannot serve: answered with `status`, the error envelope and `headers`."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_document(code, message, field), status_code=status, headers=headers)


def api_app(title: str, lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]], openapi: bool) -> FastAPI:
    """A service's API app: answers JSON (JSONResponse), ApiError as its error response. /docs and /redoc
    would load their scripts from a CDN (which the live view's CSP refuses too): never served. The
    schema, /openapi.json, only when `openapi` (the service's OPENAPI setting)."""
    app = FastAPI(
        title=title,
        version="1",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if openapi else None,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    return app
