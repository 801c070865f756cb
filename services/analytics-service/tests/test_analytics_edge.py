"""The analytics service's edge without a broker: the live view serves the latest frames of the streams
this replica analyzes and nothing else of the archive, behind the Host allow-list and the token (with a
browser login); the probes and metrics are on the ops app; the worker analyzes a bounded set of streams."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from analytics_service.app import SESSION_COOKIE, ServiceState, create_app, create_ops_app
from analytics_service.engine import Analytics, TrackerSettings
from analytics_service.metrics import AnalyticsMetrics
from analytics_service.settings import AnalyticsSettings, load_stream_names
from analytics_service.view import RECENT_FRAMES, LiveView
from analytics_service.worker import AnalyticsWorker, Batch
from vidpipe.analytics_config import AnalyticsConfig
from vidpipe.contract import FrameResult
from vidpipe.health import Heartbeat
from vidpipe.kafka import KafkaSettings
from vidpipe.storage import LocalStorage, frame_key
from vidpipe.topics import TopicSettings

TOKEN = "live-view-token-for-the-unit-tests"
START_US = 1_800_000_000_000_000


def result(stream: str, seq: int, epoch: int = 7) -> FrameResult:
    ts = START_US + seq * 40_000
    return FrameResult(stream_id=stream, epoch=epoch, seq=seq, capture_ts_us=ts, processed_ts_us=ts + 1000,
                       width=640, height=360, model_name="m", model_version="1", request_ms=1.0,
                       detections=[{"class_id": 0, "label": "person", "score": 0.9, "box": [10, 10, 60, 120]}])  # fmt: skip


@pytest.fixture
def live(tmp_path):
    """A state whose view analyzed 40 frames of stream "cam-a", each archived; the archive also holds
    frames of "cam-b", which this replica never analyzed (another replica's, say)."""
    archive = LocalStorage(tmp_path / "archive")
    analytics = Analytics(AnalyticsConfig(), TrackerSettings())
    view = LiveView(AnalyticsConfig())
    for seq in range(40):
        frame = result("cam-a", seq)
        archive.put(frame_key("cam-a", frame.epoch, frame.capture_ts_us, seq), f"jpeg a {seq}".encode())
        view.update(frame, analytics.process(frame), {}, time.time_ns() // 1000)
        other = result("cam-b", seq)
        archive.put(frame_key("cam-b", other.epoch, other.capture_ts_us, seq), f"jpeg b {seq}".encode())
    heartbeat = Heartbeat(stale_after_s=60)
    heartbeat.ready = True
    return ServiceState(view=view, metrics=AnalyticsMetrics(), heartbeat=heartbeat, storage=archive)


def client(state, token=None, **settings) -> TestClient:
    return TestClient(create_app(state, AnalyticsSettings(**settings), token), base_url="http://localhost:8082")


def test_the_latest_frame_of_a_held_stream_and_nothing_else_of_the_archive(live):
    api = client(live)
    latest = api.get("/api/streams/cam-a/latest").json()
    assert latest["frame_url"] == "/api/streams/cam-a/frame?epoch=7&seq=39"
    frame = api.get(latest["frame_url"])
    assert frame.status_code == 200 and frame.content == b"jpeg a 39" and frame.headers["content-type"] == "image/jpeg"
    assert frame.headers["cache-control"] == "no-store"
    assert api.get("/api/streams/cam-a/frame").content == b"jpeg a 39"  # no parameters: the latest
    recent = 40 - RECENT_FRAMES
    assert api.get(f"/api/streams/cam-a/frame?seq={recent}").content == f"jpeg a {recent}".encode()
    refused = {
        "/api/streams/cam-b/frame": 404,  # archived, but not a stream this replica holds
        "/api/streams/cam-b/frame?epoch=7&seq=39": 404,
        f"/api/streams/cam-a/frame?seq={recent - 1}": 404,  # archived, but no longer recent
        "/api/streams/cam-a/frame?seq=40": 404,  # not analyzed (yet)
        "/api/streams/cam-a/frame?epoch=6&seq=39": 404,  # another publisher run
        "/api/streams/cam-a/frame?seq=-1": 422,
        "/api/streams/..%2Fcam-b/frame": 404,
        "/api/streams/.cam-b/frame": 422,
        f"/api/frames/cam-b/39?ts={START_US + 39 * 40_000}&epoch=7": 404,  # archive browsing: gone
    }
    assert {path: api.get(path).status_code for path in refused} == refused
    codes = {api.get(p).json()["error"]["code"] for p in list(refused)[:4]}
    assert codes == {"unknown_stream", "frame_not_recent"}


def test_without_an_archive_there_is_no_frame(live):
    live.storage = None
    api = client(live)
    assert api.get("/api/streams/cam-a/latest").json()["frame_url"] is None
    assert api.get("/api/streams/cam-a/frame").json()["error"]["code"] == "no_archive"


def test_probes_and_metrics_are_on_the_ops_app_only(live):
    api, ops = client(live), TestClient(create_ops_app(live))
    assert ops.get("/healthz").json() == {"status": "ok"} and ops.get("/readyz").json() == {"status": "ready"}
    assert "vidpipe_analytics_results" in ops.get("/metrics").text
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert api.get(path).status_code == 404, path
    for path in ("/", "/api/streams", "/api/streams/cam-a/frame"):
        assert ops.get(path).status_code == 404, path
    live.heartbeat.ready = False
    assert ops.get("/readyz").status_code == 503
    assert client(live, openapi=True).get("/openapi.json").status_code == 200


def test_the_host_allow_list_refuses_a_rebound_name(live):
    api = client(live)
    assert api.get("/api/streams", headers={"Host": "127.0.0.1:8082"}).status_code == 200
    assert api.get("/api/streams", headers={"Host": "analytics.vidpipe.svc"}).status_code == 200
    for host in ("attacker.example:8082", "analytics.vidpipe"):
        answer = api.get("/", headers={"Host": host})
        assert answer.status_code == 421 and answer.json()["error"]["field"] == "Host", host
    assert (
        client(live, allowed_hosts="analytics.vidpipe").get("/", headers={"Host": "analytics.vidpipe"}).status_code
        == 200
    )


def test_with_a_token_the_page_and_api_need_it_and_a_browser_logs_in_once(live):
    api = client(live, token=TOKEN)
    for path in ("/", "/live/live.js", "/api/streams", "/api/streams/cam-a/latest", "/api/streams/cam-a/frame"):
        answer = api.get(path)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized", path
    assert "/?token=" in api.get("/").json()["error"]["message"]  # says how to get in
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert api.get("/api/streams/cam-a/frame", headers=bearer).content == b"jpeg a 39"
    # The printed link: the token once, then a cookie; the redirect drops the token from the URL.
    login = api.get(f"/?token={TOKEN}", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"
    assert "HttpOnly" in login.headers["set-cookie"] and "SameSite=Strict" in login.headers["set-cookie"]
    assert TOKEN not in login.headers["set-cookie"]
    page = api.get("/")  # the client keeps the cookie, as a browser does
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert api.get("/api/streams/cam-a/frame").content == b"jpeg a 39"
    assert SESSION_COOKIE in api.cookies
    stranger = client(live, token=TOKEN)
    assert stranger.get("/?token=not-the-token-at-all", follow_redirects=False).status_code == 401
    stranger.cookies.set(SESSION_COOKIE, f"{int(time.time()) + 3600}.forged")
    assert stranger.get("/api/streams").status_code == 401


# --- the worker's streams ----------------------------------------------------------------------------


class Record:
    """What the worker reads of a Kafka message."""

    def __init__(self, value: bytes, offset: int):
        self._value, self._offset = value, offset

    def topic(self):
        return "results"

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def value(self):
        return self._value

    def key(self):
        return None

    def headers(self):
        return None

    def error(self):
        return None


def worker_for(settings: AnalyticsSettings, streams=None):
    metrics, view = AnalyticsMetrics(), LiveView(AnalyticsConfig())
    analytics = Analytics(AnalyticsConfig(), TrackerSettings())
    worker = AnalyticsWorker(
        settings, KafkaSettings(bootstrap="127.0.0.1:1"), TopicSettings(), analytics, view, metrics, None, streams
    )
    return worker, analytics, metrics


def feed(worker, streams: list[str]) -> Batch:
    batch = Batch()
    for offset, stream in enumerate(streams):
        worker._handle(Record(result(stream, offset).model_dump_json().encode(), offset), batch, START_US)
    return batch


def other(metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("vidpipe_analytics_other_stream_results_total", {"reason": reason}) or 0


def test_only_the_listed_streams_are_analyzed(tmp_path):
    path = tmp_path / "streams.yaml"
    path.write_text("streams:\n  - name: cam-a\n  - cam-b\nanalytics: {}\n")
    names = load_stream_names(AnalyticsSettings(streams_file=path))
    assert names == {"cam-a", "cam-b"}
    worker, analytics, metrics = worker_for(AnalyticsSettings(), names)
    try:
        batch = feed(worker, ["cam-a", "intruder-1", "cam-b", "intruder-2", "intruder-1"])
        assert analytics.streams() == ["cam-a", "cam-b"]
        assert other(metrics, "unlisted_stream") == 3
        assert batch.offsets == {("results", 0): 5}, "skipped results are committed: nothing stalls"
        labels = {s.labels.get("stream") for f in metrics.registry.collect() for s in f.samples}
        assert not any(str(label).startswith("intruder") for label in labels), "no series per unlisted stream"
    finally:
        worker.consumer.close()


def test_without_a_list_the_streams_are_capped(tmp_path):
    assert load_stream_names(AnalyticsSettings()) is None
    (tmp_path / "s.yaml").write_text("analytics: {}\n")
    assert load_stream_names(AnalyticsSettings(streams_file=tmp_path / "s.yaml")) is None
    worker, analytics, metrics = worker_for(AnalyticsSettings(max_streams=3))
    try:
        feed(worker, [f"cam-{n}" for n in range(10)] + ["cam-0", "cam-2"])
        assert analytics.streams() == ["cam-0", "cam-1", "cam-2"]
        assert other(metrics, "stream_limit") == 7
        assert metrics.registry.get_sample_value("vidpipe_analytics_results_total", {"stream": "cam-0"}) == 2
    finally:
        worker.consumer.close()
