"""vidpipe.http_api: the API app both HTTP services build on answers JSON, ApiError in the one error
envelope with its status and headers, runs its lifespan, and serves no /docs (the schema on request)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from vidpipe.http_api import ApiError, api_app


def app(openapi: bool, events: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("start")
        yield
        events.append("stop")

    built = api_app("vidpipe test", lifespan, openapi)

    @built.get("/busy")
    async def busy() -> dict[str, str]:
        raise ApiError(503, "overloaded", "retry later", "body", headers={"Retry-After": "1"})

    @built.get("/floats")
    async def floats() -> dict[str, list[float]]:
        return {"values": [0.5, 1.25]}

    return built


def test_an_api_error_is_its_status_the_envelope_and_its_headers():
    with TestClient(app(False, [])) as client:
        answer = client.get("/busy")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": {"code": "overloaded", "message": "retry later", "field": "body"}}


def test_answers_are_compact_json_and_the_lifespan_runs():
    events: list[str] = []
    with TestClient(app(False, events)) as client:
        answer = client.get("/floats")
        assert events == ["start"]
    assert events == ["start", "stop"]
    assert answer.content == b'{"values":[0.5,1.25]}'


def test_no_docs_and_the_schema_only_on_request():
    with TestClient(app(False, [])) as client:
        assert [client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")] == [404, 404, 404]
    with TestClient(app(True, [])) as client:
        schema = client.get("/openapi.json")
        assert schema.status_code == 200 and schema.json()["info"] == {"title": "vidpipe test", "version": "1"}
        assert client.get("/docs").status_code == 404
