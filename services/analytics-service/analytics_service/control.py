"""The stream registry's control API, served by the analytics service beside its live view.

This service already follows the whole registry (it needs every stream's lines and zones) and already
has the authenticated edge (the Host allow-list, the bearer token and the browser session), so the
page where an operator sees a stream is also where its lines and zones are drawn and saved, and no
second authenticated service exists only to write a topic.

Every write is validated by the registry's own code (vidpipe.stream_registry: the same as `apply -f`,
the charts' seed and a record read back), produced through RegistryWriter and acknowledged by the
broker, and answered once this replica's follower has read it back: a GET right after shows it.
A refusal names each field at fault (`streams[lobby].zones[0].polygon`); nothing of a refused request
is written. A broker that does not take the write, or a registry not read yet, answers 503 with
Retry-After.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from vidpipe.contract import check_stream_id
from vidpipe.http_api import ApiError, JSONResponse
from vidpipe.http_edge import error_document
from vidpipe.registry_client import RegistryUnavailable
from vidpipe.stream_registry import (
    RegistryError,
    StreamDefinition,
    encode_definition,
    parse_definition,
    parse_streams,
    plan,
)
from vidpipe.stream_status import StreamStatus

from .catalog import RegionCatalog
from .status import stream_state
from .view import LiveView

# A stream definition is a few KiB; a streams file of a large site well under this.
MAX_BODY_BYTES = 2 * 1024 * 1024
RETRY_AFTER_S = "5"


class RegistryReads(Protocol):
    """What the API reads of vidpipe.registry_client.RegistryFollower."""

    @property
    def ready(self) -> bool: ...

    @property
    def version(self) -> int: ...

    @property
    def invalid(self) -> dict[str, str]: ...

    def snapshot(self) -> dict[str, StreamDefinition]: ...


class RegistryWrites(Protocol):
    """What the API writes through: vidpipe.registry_client.RegistryWriter."""

    def put(self, definition: StreamDefinition) -> None: ...

    def remove(self, stream_id: str) -> None: ...


class DefinitionRefused(ApiError):
    """422 listing every problem ({"field", "message"}), the first also as the envelope's field."""

    def __init__(self, problems: list[str]):
        self.problems = [_split_problem(p) for p in problems]
        first = self.problems[0]
        super().__init__(422, "invalid_definition", "; ".join(problems), first["field"])


def _split_problem(problem: str) -> dict[str, str | None]:
    key, sep, message = problem.partition(": ")
    return {"field": key, "message": message} if sep and " " not in key else {"field": None, "message": problem}


def etag(definition: StreamDefinition) -> str:
    return '"' + hashlib.sha256(encode_definition(definition)).hexdigest()[:20] + '"'


@dataclass
class RegistryControl:
    """The registry as this replica reads it, the writer, and what a stream's state is made of."""

    reads: RegistryReads
    writes: RegistryWrites
    catalog: RegionCatalog
    view: LiveView
    publisher_status: Callable[[str], StreamStatus | None] = field(default=lambda _stream_id: None)
    timeout_s: float = 10.0

    def streams(self) -> dict[str, StreamDefinition]:
        if not self.reads.ready:
            raise ApiError(503, "registry_unavailable", "the stream registry is not read yet (is the broker up?)",
                           headers={"Retry-After": RETRY_AFTER_S})  # fmt: skip
        return self.reads.snapshot()

    def get(self, stream_id: str) -> StreamDefinition:
        definition = self.streams().get(stream_id)
        if definition is None:
            raise ApiError(404, "unknown_stream", f"the registry has no stream {stream_id!r}", "stream_id")
        return definition

    def document(self, definition: StreamDefinition) -> dict[str, Any]:
        status = stream_state(definition, self.view, self.publisher_status(definition.id))
        return {"id": definition.id, "definition": definition.document(), "status": status}

    def write(self, changes: Mapping[str, StreamDefinition | None]) -> None:
        """Put or remove (None) each, then wait until the follower has read every one back."""
        try:
            for stream_id, definition in changes.items():
                if definition is None:
                    self.writes.remove(stream_id)
                else:
                    self.writes.put(definition)
        except RegistryUnavailable as exc:
            raise ApiError(
                503, "registry_unavailable", str(exc)[:500], headers={"Retry-After": RETRY_AFTER_S}
            ) from None
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            current = self.reads.snapshot()
            if all(current.get(k) == v for k, v in changes.items()):
                return
            time.sleep(0.05)
        raise ApiError(
            503, "registry_lagging",
            "the broker took the write but this replica has not read it back yet: GET it again shortly",
            headers={"Retry-After": RETRY_AFTER_S},
        )  # fmt: skip


def _stream_id(value: str) -> str:
    try:
        return check_stream_id(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_stream_id", str(exc), "stream_id") from None


async def _json_body(request: Request) -> Any:
    """The request's JSON, read up to MAX_BODY_BYTES (413 beyond: nothing more is buffered)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        # Also what keeps a cross-site form from writing: no form can send application/json.
        raise ApiError(415, "unsupported_media_type", "send the body as application/json", "Content-Type")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(422, "invalid_json", f"the body is not JSON: {exc}", "body") from None


def _check_precondition(request: Request, current: StreamDefinition | None) -> None:
    """If-Match: the change applies only to the version the client read (its ETag); If-None-Match: *:
    only when the stream does not exist yet (add, never replace)."""
    match = request.headers.get("if-match")
    if match is not None and (current is None or (match.strip() != "*" and match.strip() != etag(current))):
        raise ApiError(412, "precondition_failed", "the stream changed since it was read: read it again", "If-Match")
    if request.headers.get("if-none-match", "").strip() == "*" and current is not None:
        raise ApiError(412, "stream_exists", f"the stream {current.id!r} exists already (update it instead)", "id")


def _validated(data: Any, stream_id: str) -> StreamDefinition:
    if not isinstance(data, dict):
        raise DefinitionRefused([f"streams[{stream_id}]: expected a JSON object"])
    if "id" in data and data["id"] != stream_id:
        raise DefinitionRefused([f"streams[{stream_id}].id: {data['id']!r} differs from the path's {stream_id!r}"])
    try:
        return parse_definition({**data, "id": stream_id}, f"streams[{stream_id}]")
    except RegistryError as exc:
        raise DefinitionRefused(exc.problems) from None


def add_registry_routes(app: FastAPI, control: RegistryControl | None) -> None:
    """The control API under /api/registry (without a registry, ANALYTICS_REGISTRY=false: 404 naming it)."""

    @app.exception_handler(DefinitionRefused)
    async def _refused(request: Request, exc: DefinitionRefused) -> Response:
        document = error_document(exc.code, exc.message, exc.field)
        document["error"]["problems"] = exc.problems
        return JSONResponse(document, status_code=exc.status)

    def registry() -> RegistryControl:
        if control is None:
            raise ApiError(404, "registry_disabled", "this service does not follow the stream registry "
                           "(ANALYTICS_REGISTRY=false)")  # fmt: skip
        return control

    def answer(definition: StreamDefinition, status: int = 200) -> Response:
        return JSONResponse(registry().document(definition), status_code=status, headers={"ETag": etag(definition)})

    async def change(
        request: Request, stream_id: str, make: Callable[[StreamDefinition], StreamDefinition]
    ) -> Response:
        reg = registry()
        current = reg.get(_stream_id(stream_id))
        _check_precondition(request, current)
        updated = make(current)
        if updated != current:
            await run_in_threadpool(reg.write, {updated.id: updated})
        return answer(updated)

    @app.get("/api/registry/streams", summary="Every stream of the registry: its definition and its state")
    async def list_streams() -> dict[str, Any]:
        reg = registry()
        streams = reg.streams()
        return {
            "regions_from": reg.catalog.source,
            "streams": [reg.document(streams[k]) for k in sorted(streams)],
            "invalid": [{"id": k, "error": v} for k, v in sorted(reg.reads.invalid.items())],
        }

    # The :enable and :disable routes come first: {stream_id} would match "lobby:enable" too.
    @app.post("/api/registry/streams/{stream_id}:enable", summary="Publish and analyze the stream")
    async def enable(request: Request, stream_id: str) -> Response:
        return await change(request, stream_id, lambda d: d.model_copy(update={"enabled": True}))

    @app.post("/api/registry/streams/{stream_id}:disable", summary="Stop publishing the stream; keep its definition")
    async def disable(request: Request, stream_id: str) -> Response:
        return await change(request, stream_id, lambda d: d.model_copy(update={"enabled": False}))

    @app.get("/api/registry/streams/{stream_id}", summary="One stream's definition and state (ETag: its version)")
    async def get_stream(stream_id: str) -> Response:
        return answer(registry().get(_stream_id(stream_id)))

    @app.put("/api/registry/streams/{stream_id}", summary="Add or replace a stream (201 added, 200 replaced)",
             status_code=200)  # fmt: skip
    async def put_stream(request: Request, stream_id: str) -> Response:
        reg = registry()
        stream_id = _stream_id(stream_id)
        definition = _validated(await _json_body(request), stream_id)
        current = reg.streams().get(stream_id)
        _check_precondition(request, current)
        if definition != current:
            await run_in_threadpool(reg.write, {stream_id: definition})
        return answer(definition, 201 if current is None else 200)

    @app.patch("/api/registry/streams/{stream_id}", summary="Change some fields of a stream (lists are replaced)")
    async def patch_stream(request: Request, stream_id: str) -> Response:
        data = await _json_body(request)
        if not isinstance(data, dict):
            raise DefinitionRefused([f"streams[{stream_id}]: expected a JSON object of the fields to change"])
        return await change(request, stream_id, lambda d: _validated({**d.document(), **data}, d.id))

    @app.delete("/api/registry/streams/{stream_id}", summary="Remove a stream (its analytics state goes with it)",
                status_code=204)  # fmt: skip
    async def delete_stream(request: Request, stream_id: str) -> Response:
        reg = registry()
        current = reg.get(_stream_id(stream_id))
        _check_precondition(request, current)
        await run_in_threadpool(reg.write, {current.id: None})
        return Response(status_code=204)

    @app.post("/api/registry/apply", summary="Make the registry match a streams file; dry_run: the diff only")
    async def apply(
        request: Request,
        dry_run: Annotated[bool, Query(description="Answer the diff, change nothing")] = False,
        prune: Annotated[bool, Query(description="Remove the streams the file does not define")] = True,
    ) -> dict[str, Any]:
        reg = registry()
        try:
            desired = parse_streams(await _json_body(request))
        except RegistryError as exc:
            raise DefinitionRefused(exc.problems) from None
        changes = plan(reg.streams(), desired, prune)
        if not dry_run and not changes.empty:
            writes: dict[str, StreamDefinition | None] = {d.id: d for d in changes.added}
            writes.update({after.id: after for _, after in changes.updated})
            writes.update({d.id: None for d in changes.removed})
            await run_in_threadpool(reg.write, writes)
        return {
            "dry_run": dry_run,
            "prune": prune,
            "applied": not dry_run and not changes.empty,
            "diff": changes.render(),
            "added": [d.id for d in changes.added],
            "updated": [after.id for _, after in changes.updated],
            "removed": [d.id for d in changes.removed],
            "unchanged": changes.unchanged,
        }
