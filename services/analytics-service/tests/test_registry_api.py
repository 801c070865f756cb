"""The registry's control API without a broker (an in-memory registry stands in for the writer and the
follower): every route, its codes, its refusals naming the field, If-Match, the outage answers, and
what a stream's state is made of. The same routes against the real broker: test_registry_service.py."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from analytics_service.app import ServiceState, create_app
from analytics_service.catalog import RegionCatalog
from analytics_service.control import RegistryControl
from analytics_service.engine import Analytics, TrackerSettings
from analytics_service.metrics import AnalyticsMetrics
from analytics_service.settings import AnalyticsSettings
from analytics_service.status import stream_state
from analytics_service.view import LiveView
from vidpipe.contract import FrameResult
from vidpipe.health import Heartbeat
from vidpipe.registry_client import RegistryUnavailable
from vidpipe.stream_registry import StreamDefinition, parse_definition
from vidpipe.stream_status import StreamStatus

TOKEN = "registry-api-token-for-the-unit-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GATE = {"name": "gate", "start": [0.5, 1.0], "end": [0.5, 0.0]}
PEN = {"name": "pen", "polygon": [[0.6, 0.2], [0.9, 0.2], [0.9, 0.9], [0.6, 0.9]]}
BOW_TIE = {"name": "pen", "polygon": [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]}


class MemoryRegistry:
    """Writer and follower in one: a write is read back at once (or refused while `down`)."""

    def __init__(self) -> None:
        self.ready = True
        self.version = 0
        self.invalid: dict[str, str] = {}
        self.streams: dict[str, StreamDefinition] = {}
        self.down = False
        self.writes: list[str] = []

    def snapshot(self) -> dict[str, StreamDefinition]:
        return dict(self.streams)

    def put(self, definition: StreamDefinition) -> None:
        if self.down:
            raise RegistryUnavailable("the registry topic did not take the write: broker down")
        self.streams[definition.id] = definition
        self.version += 1
        self.writes.append(f"put {definition.id}")

    def remove(self, stream_id: str) -> None:
        if self.down:
            raise RegistryUnavailable("the registry topic did not take the write: broker down")
        self.streams.pop(stream_id, None)
        self.version += 1
        self.writes.append(f"remove {stream_id}")


def lobby(**fields) -> dict:
    return {"id": "lobby", "source": "secret:lobby", "lines": [GATE], **fields}


@pytest.fixture
def registry() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
def api(registry):
    catalog = RegionCatalog(registry=registry)
    view = LiveView(catalog)
    control = RegistryControl(registry, registry, catalog, view, timeout_s=0.5)
    state = ServiceState(view=view, metrics=AnalyticsMetrics(), heartbeat=Heartbeat(60), registry=control)
    return TestClient(create_app(state, AnalyticsSettings(), TOKEN), base_url="http://localhost:8082", headers=AUTH)


def test_add_read_change_and_remove_a_stream(api, registry):
    added = api.put("/api/registry/streams/lobby", json=lobby())
    assert added.status_code == 201 and added.json()["definition"]["lines"] == [GATE]
    assert added.headers["cache-control"] == "no-store"
    assert api.put("/api/registry/streams/lobby", json=lobby(target_fps=10)).status_code == 200  # replaced
    read = api.get("/api/registry/streams/lobby")
    assert read.status_code == 200 and read.json()["definition"]["target_fps"] == 10
    assert read.json()["status"]["state"] == "unknown"  # no publisher status, no results here

    patched = api.patch("/api/registry/streams/lobby", json={"zones": [PEN], "target_fps": 5})
    assert patched.status_code == 200
    assert patched.json()["definition"]["zones"] == [PEN] and patched.json()["definition"]["lines"] == [GATE]
    assert api.post("/api/registry/streams/lobby:disable").json()["definition"]["enabled"] is False
    assert api.get("/api/registry/streams").json()["streams"][0]["status"]["state"] == "disabled"
    assert api.post("/api/registry/streams/lobby:enable").json()["definition"]["enabled"] is True
    writes = len(registry.writes)
    assert api.post("/api/registry/streams/lobby:enable").status_code == 200 and len(registry.writes) == writes

    listed = api.get("/api/registry/streams").json()
    assert [s["id"] for s in listed["streams"]] == ["lobby"] and listed["regions_from"] == "registry"
    assert api.delete("/api/registry/streams/lobby").status_code == 204
    assert api.get("/api/registry/streams/lobby").status_code == 404
    assert api.get("/api/registry/streams").json() == {"regions_from": "file", "streams": [], "invalid": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("PUT", "/api/registry/streams/lobby", lobby(zones=[BOW_TIE]), 422, "streams[lobby].zones[0].polygon"),
        ("PUT", "/api/registry/streams/lobby", lobby(target_fps=0), 422, "streams[lobby].target_fps"),
        ("PUT", "/api/registry/streams/lobby", lobby(colour="red"), 422, "streams[lobby].colour"),
        ("PUT", "/api/registry/streams/lobby", {**lobby(), "id": "yard"}, 422, "streams[lobby].id"),
        ("PUT", "/api/registry/streams/lobby", lobby(source="rtsp://admin:pw@cam/1"), 422, "streams[lobby].source"),
        ("PUT", "/api/registry/streams/lobby", [1], 422, "streams[lobby]"),
        ("PUT", "/api/registry/streams/.lobby", lobby(), 422, "stream_id"),
        ("PATCH", "/api/registry/streams/lobby", {"lines": [{"name": "gate", "start": [0, 2], "end": [1, 1]}]},
         422, "streams[lobby].lines[0].start"),
        ("PATCH", "/api/registry/streams/yard", {"enabled": False}, 404, "stream_id"),
        ("POST", "/api/registry/streams/yard:enable", None, 404, "stream_id"),
        ("DELETE", "/api/registry/streams/yard", None, 404, "stream_id"),
    ],
)  # fmt: skip
def test_a_refusal_names_the_field_and_writes_nothing(api, registry, method, path, body, status, field):
    api.put("/api/registry/streams/lobby", json=lobby())
    before = registry.snapshot()
    writes = len(registry.writes)
    answer = api.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert registry.snapshot() == before and len(registry.writes) == writes


def test_every_problem_is_listed_and_a_password_is_never_echoed(api):
    answer = api.put("/api/registry/streams/lobby", json=lobby(zones=[BOW_TIE], source="rtsp://admin:hunter2@cam/1"))
    problems = answer.json()["error"]["problems"]
    assert {p["field"] for p in problems} == {"streams[lobby].zones[0].polygon", "streams[lobby].source"}
    assert "hunter2" not in answer.text


def test_apply_shows_the_diff_applies_it_and_refuses_a_bad_file_whole(api, registry):
    api.put("/api/registry/streams/lobby", json=lobby())
    api.put("/api/registry/streams/old", json={"id": "old", "source": "secret:old"})
    desired = {"streams": [lobby(zones=[PEN]), {"id": "yard", "source": "secret:yard"}]}

    dry = api.post("/api/registry/apply?dry_run=true", json=desired).json()
    assert dry["applied"] is False and (dry["added"], dry["updated"], dry["removed"]) == (["yard"], ["lobby"], ["old"])
    assert dry["diff"] == "+ yard (added)\n~ lobby: zones [] -> ['pen']\n- old (removed)"
    assert set(registry.streams) == {"lobby", "old"}

    kept = api.post("/api/registry/apply?prune=false&dry_run=true", json=desired).json()
    assert kept["removed"] == [] and kept["prune"] is False

    bad = {"streams": [lobby(zones=[BOW_TIE]), {"id": "yard", "source": "secret:yard"}, {"id": "x"}]}
    refused = api.post("/api/registry/apply", json=bad)
    assert refused.status_code == 422
    assert {p["field"] for p in refused.json()["error"]["problems"]} == {
        "streams[lobby].zones[0].polygon",
        "streams[x].source",
    }
    assert set(registry.streams) == {"lobby", "old"} and registry.streams["lobby"].zones == []

    applied = api.post("/api/registry/apply", json=desired).json()
    assert applied["applied"] is True and set(registry.streams) == {"lobby", "yard"}
    assert api.get("/api/registry/streams/lobby").json()["definition"]["zones"] == [PEN]
    again = api.post("/api/registry/apply", json=desired).json()
    assert again["applied"] is False and again["diff"] == "no changes"


def test_if_match_and_if_none_match(api):
    added = api.put("/api/registry/streams/lobby", json=lobby(), headers={"If-None-Match": "*"})
    assert added.status_code == 201
    exists = api.put("/api/registry/streams/lobby", json=lobby(), headers={"If-None-Match": "*"})
    assert exists.status_code == 412 and exists.json()["error"]["code"] == "stream_exists"
    tag = added.headers["etag"]
    assert (
        api.patch("/api/registry/streams/lobby", json={"target_fps": 7}, headers={"If-Match": tag}).status_code == 200
    )
    stale = api.patch("/api/registry/streams/lobby", json={"target_fps": 8}, headers={"If-Match": tag})
    assert stale.status_code == 412 and stale.json()["error"]["field"] == "If-Match"
    assert api.get("/api/registry/streams/lobby").json()["definition"]["target_fps"] == 7
    assert (
        api.put("/api/registry/streams/yard", json={"source": "secret:y"}, headers={"If-Match": "*"}).status_code == 412
    )


def test_outages_answer_503_with_retry_after(api, registry):
    registry.down = True
    down = api.put("/api/registry/streams/lobby", json=lobby())
    assert (
        down.status_code == 503
        and down.headers["retry-after"]
        and down.json()["error"]["code"] == "registry_unavailable"
    )
    registry.down = False
    registry.ready = False
    unread = api.get("/api/registry/streams")
    assert unread.status_code == 503 and unread.headers["retry-after"]


def test_a_write_not_read_back_in_time_answers_503(api, registry):
    registry.put = lambda definition: None  # taken, but never seen by the follower
    lagging = api.put("/api/registry/streams/lobby", json=lobby())
    assert lagging.status_code == 503 and lagging.json()["error"]["code"] == "registry_lagging"


def test_the_api_needs_the_token_json_and_a_bounded_body(api):
    assert api.get("/api/registry/streams", headers={"Authorization": ""}).status_code == 401
    assert (
        api.put(
            "/api/registry/streams/lobby", json=lobby(), headers={"Authorization": "Bearer nope-nope-nope-nope"}
        ).status_code
        == 401
    )
    form = api.put(
        "/api/registry/streams/lobby",
        content=b"id=lobby",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415
    garbled = api.put("/api/registry/streams/lobby", content=b"{nope", headers={"Content-Type": "application/json"})
    assert garbled.status_code == 422 and garbled.json()["error"]["field"] == "body"
    huge = api.post(
        "/api/registry/apply", content=b"[" + b"1," * 1_100_000 + b"1]", headers={"Content-Type": "application/json"}
    )
    assert huge.status_code == 413  # fmt: skip


def test_without_a_registry_the_routes_say_so():
    view = LiveView(RegionCatalog())
    state = ServiceState(view=view, metrics=AnalyticsMetrics(), heartbeat=Heartbeat(60))
    api = TestClient(create_app(state, AnalyticsSettings()), base_url="http://localhost:8082")
    answer = api.get("/api/registry/streams")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "registry_disabled"


def _status(**fields) -> StreamStatus:
    base = {"stream_id": "lobby", "state": "failed", "pod": "publisher-1", "updated_unix_s": 1000.0, "every_s": 5.0}
    return StreamStatus.model_validate({**base, **fields})


def test_a_streams_state_from_its_publisher_else_from_the_results_here():
    definition = parse_definition(lobby(target_fps=5))
    view = LiveView(RegionCatalog())
    now = time.time()
    unknown = stream_state(definition, view, None, now)
    assert unknown["state"] == "unknown" and unknown["analyzed_here"] is False

    ts = int((now - 2) * 1e6)
    result = FrameResult(stream_id="lobby", seq=0, capture_ts_us=ts, processed_ts_us=ts, width=640, height=360,
                         model_name="m", model_version="1", request_ms=1.0, detections=[])  # fmt: skip
    view.update(result, Analytics(RegionCatalog(), TrackerSettings()).process(result), {}, ts)
    seen = stream_state(definition, view, None, now)
    assert seen["state"] == "publishing" and seen["reported_by"] == "results" and seen["last_frame_age_s"] == 2.0
    assert stream_state(definition, view, None, now + 60)["state"] == "stale"

    failed = _status(last_error="connection refused", updated_unix_s=now - 1, last_frame_unix_s=now - 30)
    reported = stream_state(definition, view, failed, now)
    assert (reported["state"], reported["reported_by"], reported["pod"]) == ("failed", "publisher", "publisher-1")
    assert reported["last_error"] == "connection refused" and reported["last_frame_age_s"] == 30.0
    # A status nobody refreshed for 3 intervals is stale: the results decide.
    assert stream_state(definition, view, _status(updated_unix_s=now - 16), now)["reported_by"] == "results"
    disabled = parse_definition(lobby(enabled=False))
    assert stream_state(disabled, view, failed, now)["state"] == "disabled"
