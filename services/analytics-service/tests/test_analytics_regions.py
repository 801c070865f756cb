"""Lines and zones that change while streams run (the registry, followed live), without a broker: a
change applies from the stream's next frame and touches no other stream; the registry wins over the
streams file once it holds a stream; a stream removed from it loses its state and every metric series."""

from __future__ import annotations

import time

from analytics_service.admission import StreamAdmission
from analytics_service.catalog import RegionCatalog
from analytics_service.engine import Analytics, StreamAnalyzer, TrackerSettings
from analytics_service.metrics import AnalyticsMetrics
from analytics_service.settings import AnalyticsSettings
from analytics_service.view import LiveView
from analytics_service.worker import AnalyticsWorker
from vidpipe.analytics_config import StreamAnalytics, parse_analytics
from vidpipe.contract import FrameResult
from vidpipe.kafka import KafkaSettings
from vidpipe.stream_registry import StreamDefinition, parse_definition
from vidpipe.topics import TopicSettings

W, H = 1000, 1000
T0 = 1_800_000_000_000_000
NOW = T0 + 5_000_000
GATE = {"name": "gate", "start": [0.5, 1.0], "end": [0.5, 0.0]}
MOVED = {"name": "gate", "start": [0.21, 1.0], "end": [0.21, 0.0]}
PEN = {"name": "pen", "polygon": [[0.6, 0.2], [0.9, 0.2], [0.9, 0.9], [0.6, 0.9]]}


class Registry:
    """The follower as the catalog reads it: ready, a version, a snapshot."""

    def __init__(self, *definitions: StreamDefinition, ready: bool = True):
        self.ready = ready
        self.version = 0
        self.streams = {d.id: d for d in definitions}

    def snapshot(self) -> dict[str, StreamDefinition]:
        return dict(self.streams)

    def put(self, definition: StreamDefinition) -> None:
        self.streams[definition.id] = definition
        self.version += 1

    def remove(self, stream_id: str) -> None:
        del self.streams[stream_id]
        self.version += 1


def definition(stream: str, lines=(), zones=()) -> StreamDefinition:
    return parse_definition({"id": stream, "source": f"secret:{stream}", "lines": list(lines), "zones": list(zones)})


def walker(stream: str, k: int, x0: float = 0.1, step: float = 0.02) -> FrameResult:
    """Frame k of a box walking right along y = 0.8 (its anchor), from x0."""
    x = (x0 + step * k) * W
    box = [x - 30, 0.8 * H - 100, x + 30, 0.8 * H]
    return FrameResult(stream_id=stream, seq=k, capture_ts_us=T0 + k * 40_000, processed_ts_us=T0, width=W,
                       height=H, model_name="m", model_version="1", request_ms=1.0,
                       detections=[{"class_id": 0, "label": "person", "score": 0.9, "box": box}])  # fmt: skip


def kinds(events) -> list[tuple]:
    return [(e.type, e.seq, getattr(e, "line", None) or getattr(e, "zone", None)) for e in events]


def test_a_moved_line_counts_from_the_next_frame_and_the_other_stream_goes_on():
    registry = Registry(definition("a", [GATE]), definition("b", zones=[PEN]))
    catalog = RegionCatalog(registry=registry)
    analytics = Analytics(catalog, TrackerSettings())
    events = []
    for k in range(5):  # a's box from x 0.10 to 0.18: left of both lines
        events += analytics.process(walker("a", k), NOW).events
        events += analytics.process(walker("b", k, x0=0.7, step=0.0), NOW).events  # b's box stands in the pen
    b_tracks = [t.track_id for t in analytics.process(walker("b", 5, x0=0.7, step=0.0), NOW).tracks]
    b_spec = catalog.for_stream("b")

    registry.put(definition("a", [MOVED]))  # the line moves left, just ahead of the box (x 0.21)
    moved = analytics.process(walker("a", 5), NOW).events  # x 0.20: left of the moved line, seen against it first
    crossing = analytics.process(walker("a", 6), NOW).events  # x 0.22: past it
    b_after = analytics.process(walker("b", 6, x0=0.7, step=0.0), NOW)

    assert moved == [] and kinds(crossing) == [("line_crossed", 6, "gate")]
    assert crossing[0].track_id == 1  # a's tracker went on: same track, no reset
    assert analytics.analyzer("a").counts()["lines"]["gate"]["in"] == {"person": 1}
    # b: same regions object, same tracker, same track id, no new event.
    assert catalog.for_stream("b") is b_spec and [t.track_id for t in b_after.tracks] == b_tracks == [1]
    assert b_after.events == [] and [e.type for e in events if e.stream_id == "b"] == ["tracker_reset", "zone_entered"]


def test_an_unchanged_region_keeps_its_counts_a_changed_one_counts_afresh():
    spec = StreamAnalytics.model_validate({"lines": [GATE], "zones": [PEN]})
    analyzer = StreamAnalyzer("a", spec, TrackerSettings())
    for k in range(28):  # x 0.10 .. 0.64: across the gate, into the pen
        analyzer.process(walker("a", k), NOW)
    assert analyzer.counts()["lines"]["gate"]["in"] == {"person": 1}
    assert analyzer.counts()["zones"]["pen"] == {"occupancy": {"person": 1}, "entered": {"person": 1}}

    bigger = {"name": "pen", "polygon": [[0.5, 0.1], [0.95, 0.1], [0.95, 0.95], [0.5, 0.95]]}
    analyzer.set_regions(StreamAnalytics.model_validate({"lines": [GATE], "zones": [bigger]}))
    assert analyzer.counts()["zones"]["pen"]["entered"] == {"person": 1}  # nothing applies before a frame
    events = analyzer.process(walker("a", 28), NOW).events
    counts = analyzer.counts()
    assert events == [] and counts["lines"]["gate"]["in"] == {"person": 1}  # the gate did not change
    # The moved zone counts afresh; its occupant stays inside (judged again: still in, no new entry).
    assert counts["zones"]["pen"] == {"occupancy": {"person": 1}, "entered": {}}


def test_a_removed_zone_lets_its_occupants_leave_and_a_removed_line_is_gone():
    spec = StreamAnalytics.model_validate({"lines": [GATE], "zones": [PEN]})
    analyzer = StreamAnalyzer("a", spec, TrackerSettings())
    for k in range(28):  # x up to 0.64: in the pen
        analyzer.process(walker("a", k), NOW)
    analyzer.set_regions(StreamAnalytics())
    events = analyzer.process(walker("a", 28), NOW).events
    assert kinds(events) == [("zone_left", 28, "pen")] and events[0].label == "person"
    assert events[0].dwell_s > 0
    assert analyzer.counts() == {"lines": {}, "zones": {}}


def test_a_redelivered_result_applies_no_change():
    analyzer = StreamAnalyzer("a", StreamAnalytics.model_validate({"zones": [PEN]}), TrackerSettings())
    for k in range(28):
        analyzer.process(walker("a", k), NOW)
    analyzer.set_regions(StreamAnalytics())
    assert analyzer.process(walker("a", 3), NOW).duplicate  # redelivered: changes nothing
    assert analyzer.spec.zones and kinds(analyzer.process(walker("a", 28), NOW).events) == [("zone_left", 28, "pen")]


def test_the_registry_wins_once_it_holds_a_stream_and_the_file_applies_until_then():
    file_config = parse_analytics({"lobby": {"lines": [GATE]}}, known_streams=["lobby", "yard"])
    registry = Registry(ready=False)
    catalog = RegionCatalog(file_config, ["lobby", "yard"], registry)
    assert catalog.source == "file" and catalog.listed() == {"lobby", "yard"}
    assert [line.name for line in catalog.for_stream("lobby").lines] == ["gate"]
    registry.ready = True  # read, and empty: still the file
    assert catalog.source == "file" and catalog.for_stream("lobby").lines

    version = catalog.version
    registry.put(definition("garage", zones=[PEN]))
    assert catalog.version > version and catalog.source == "registry" and catalog.listed() == {"garage"}
    assert catalog.for_stream("lobby") == StreamAnalytics()  # the file no longer applies at all
    assert [zone.name for zone in catalog.for_stream("garage").zones] == ["pen"]
    version = catalog.version
    registry.put(definition("yard"))
    assert catalog.version > version and catalog.for_stream("garage") is catalog.for_stream("garage")

    registry.remove("garage")
    registry.remove("yard")
    assert catalog.source == "file" and catalog.for_stream("lobby").lines  # an empty registry: the file again
    assert RegionCatalog(file_config, None).listed() is None  # no list: ANALYTICS_MAX_STREAMS bounds the streams


def test_admission_follows_the_registry_and_names_removed_streams_once():
    registry = Registry(definition("a"), definition("b"))
    metrics = AnalyticsMetrics()
    admission = StreamAdmission(RegionCatalog(registry=registry), 10, metrics.other_streams)
    assert admission.admit("a") and admission.admit("b") and not admission.admit("c")
    assert admission.relisted() == []
    registry.remove("a")
    assert admission.relisted() == ["a"] and admission.relisted() == []
    assert not admission.admit("a") and admission.admit("b")
    registry.put(definition("a"))
    assert admission.relisted() == [] and admission.admit("a")


def test_a_removed_stream_loses_its_state_and_every_metric_series_another_keeps_its_own():
    registry = Registry(definition("a", [GATE]), definition("b", [GATE]))
    catalog = RegionCatalog(registry=registry)
    analytics, view, metrics = Analytics(catalog, TrackerSettings()), LiveView(catalog), AnalyticsMetrics()
    # No broker: the clients are made but never connect (nothing subscribes).
    worker = AnalyticsWorker(AnalyticsSettings(), KafkaSettings(bootstrap="127.0.0.1:1"), TopicSettings(),
                             analytics, view, metrics, streams=catalog)  # fmt: skip
    try:
        for k in range(24):  # across the gate (x 0.5) at frame 21
            for stream in ("a", "b"):
                result = walker(stream, k)
                assert worker._admission.admit(stream)
                analysis = analytics.process(result, NOW)
                for event in analysis.events:
                    metrics.observe_event(event)
                counts = analytics.analyzer(stream).counts()
                view.update(result, analysis, counts, time.time_ns() // 1000)
                metrics.observe_frame(stream, len(analysis.tracks), 0.1, counts)

        def series() -> set[str | None]:
            return {
                s.labels.get("stream") for f in metrics.registry.collect() for s in f.samples if "stream" in s.labels
            }

        assert series() == {"a", "b"}
        registry.remove("a")
        worker._forget(worker._admission.relisted(), "removed from the registry", counters=True)
        assert analytics.streams() == ["b"] and [v.stream_id for v in view.streams()] == ["b"]
        assert series() == {"b"}
        assert metrics.registry.get_sample_value(
            "vidpipe_analytics_line_crossings_total", {"stream": "b", "line": "gate", "direction": "in", "label": "person"}
        ) == 1  # fmt: skip
    finally:
        worker.consumer.close()


def test_each_stream_is_tracked_at_its_own_frame_rate_from_the_registry():
    """A lost track is kept for a buffer counted in frames: at the camera's own rate, not the service's."""
    slow = parse_definition({"id": "slow", "source": "secret:slow", "target_fps": 5})
    fast = parse_definition({"id": "fast", "source": "secret:fast", "target_fps": 25})
    registry = Registry(slow, fast)
    analytics = Analytics(RegionCatalog(registry=registry), TrackerSettings(frame_rate=25))
    for stream in ("slow", "fast"):
        analytics.process(walker(stream, 0), NOW)
    lost_after = {stream: analytics._analyzers[stream]._tracker.max_lost for stream in ("slow", "fast")}
    assert lost_after == {"slow": 5, "fast": 25}
    # From a file, which names no rates: the service's own setting.
    from_file = Analytics(RegionCatalog(file_config=parse_analytics({})), TrackerSettings(frame_rate=25))
    from_file.process(walker("slow", 0), NOW)
    assert from_file._analyzers["slow"]._tracker.max_lost == 25
