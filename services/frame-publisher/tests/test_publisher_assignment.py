"""The publisher group's pure parts: which streams a pod carries given its partitions and what it has read of
them, what changes when that changes, the status contract, and source references."""

from __future__ import annotations

import json

import pytest

from frame_publisher.assignment import carried, defined, reconcile
from frame_publisher.source_secret import SourceSecretError, resolve_reference
from frame_publisher.stream_runner import SourceRedactor
from vidpipe.stream_registry import RegistryState, StreamDefinition
from vidpipe.stream_status import StatusError, StreamStatus, decode_status, encode_status, status_topic_spec


def stream(stream_id: str, **fields) -> StreamDefinition:
    return StreamDefinition(id=stream_id, source=f"secret:{stream_id}", **fields)


def state(*definitions: StreamDefinition) -> RegistryState:
    registry = RegistryState()
    for definition in definitions:
        registry.apply(definition.id, definition)
    return registry


def test_a_pod_carries_the_enabled_streams_of_the_partitions_it_has_read_to_their_end():
    states = {0: state(stream("a"), stream("b", enabled=False)), 1: state(stream("c")), 2: state(stream("d"))}
    assert sorted(carried(states, caught_up={0, 1, 2})) == ["a", "c", "d"]
    assert sorted(carried(states, caught_up={0})) == ["a"], "a partition still being read starts nothing yet"
    assert carried(states, caught_up={5}) == {}, "a partition not owned (or released) carries nothing"
    assert carried({}, caught_up=set()) == {}


def test_removed_and_disabled_are_told_apart():
    states = {0: state(stream("a", enabled=False))}
    assert defined(states, "a") and not defined(states, "gone")


def test_reconcile_starts_stops_restarts_and_leaves_analytics_changes_running():
    line = {"name": "door", "start": [0.1, 0.5], "end": [0.9, 0.5]}
    running = {
        "same": stream("same"),
        "faster": stream("faster"),
        "lines": stream("lines"),
        "gone": stream("gone"),
        "moved": stream("moved"),
    }
    wanted = {
        "same": stream("same"),
        "faster": stream("faster", target_fps=10),
        "lines": stream("lines", lines=[line]),
        "moved": StreamDefinition(id="moved", source="rtsp://camera.example/other"),
        "new": stream("new"),
    }
    plan = reconcile(running, wanted)
    assert [d.id for d in plan.start] == ["new"]
    assert plan.stop == ["gone"]
    assert sorted(d.id for d in plan.restart) == ["faster", "moved"], "what it publishes changed"
    assert [d.id for d in plan.update] == ["lines"], "lines and zones are the analytics'"
    assert reconcile(wanted, wanted).empty


@pytest.mark.parametrize("field, value", [("resize", "640x360"), ("jpeg_quality", 50), ("loop", True)])
def test_each_publishing_field_restarts_the_stream(field, value):
    assert [d.id for d in reconcile({"a": stream("a")}, {"a": stream("a", **{field: value})}).restart] == ["a"]


def test_a_status_round_trips_and_a_tombstone_removes():
    status = StreamStatus(
        stream_id="lobby",
        state="publishing",
        pod="publishers-7d9c-x2",
        fps=4.98,
        frames_published=120,
        last_frame_unix_s=1796600000.5,
        last_frame_age_s=0.2,
        epoch=1796599976000000,
        updated_unix_s=1796600000.7,
        every_s=5.0,
    )
    assert decode_status(b"lobby", encode_status(status)) == ("lobby", status)
    assert decode_status(b"lobby", None) == ("lobby", None)
    newer = json.loads(encode_status(status)) | {"a_field_from_later": 1}
    assert decode_status(b"lobby", json.dumps(newer).encode())[1] == status, "readers ignore fields they do not know"
    with pytest.raises(StatusError, match="differs"):
        decode_status(b"yard", encode_status(status))
    with pytest.raises(StatusError):
        decode_status(b"lobby", b'{"stream_id": "lobby", "state": "dancing"}')
    spec = status_topic_spec("s")
    assert spec.config["cleanup.policy"] == "compact,delete"


def test_a_secret_reference_reads_the_mounted_key_each_time(tmp_path):
    (tmp_path / "lobby").write_text("rtsp://camera.example/stream\n")
    assert resolve_reference("secret:lobby", str(tmp_path)) == "rtsp://camera.example/stream"
    (tmp_path / "lobby").write_text('{"source": "rtsp://camera.example/moved"}')
    assert resolve_reference("secret:lobby", str(tmp_path)) == "rtsp://camera.example/moved", "updated in place"
    with pytest.raises(SourceSecretError, match="has no key 'yard'"):
        resolve_reference("secret:yard", str(tmp_path))
    assert resolve_reference("rtsp://camera.example/x", str(tmp_path)) == "rtsp://camera.example/x"
    assert resolve_reference("/videos/a.mp4", str(tmp_path)) == "/videos/a.mp4"


def test_the_redactor_learns_every_source_it_is_given():
    redact = SourceRedactor()
    redact.add("rtsp://admin:Sup3rSecret@cam-1/live")
    redact.add("rtsp://cam-2/live?token=T0kenValue")
    text = redact("cam-1 said Sup3rSecret and cam-2 said T0kenValue")
    assert "Sup3rSecret" not in text and "T0kenValue" not in text


def test_group_metrics_have_a_series_per_carried_stream_and_none_for_others():
    from prometheus_client import CollectorRegistry, generate_latest

    from frame_publisher.metrics import COUNTS, GroupCollector
    from frame_publisher.publisher import COUNTED

    assert tuple(COUNTS) == COUNTED, "every count of a stream's runs is a metric"

    class Runner:
        stream_id, reconnects, last_published_unix_s, fps, failures = "lobby", 2, 1796600000.5, 4.9, 1

        def totals(self):
            return {"frames_published": 10, "frames_delivered": 9}

    runners = [Runner()]
    registry = CollectorRegistry()
    registry.register(GroupCollector(lambda: runners))
    text = generate_latest(registry).decode()
    for line in (
        "publisher_streams_carried 1.0",
        'publisher_frames_published_total{stream="lobby"} 10.0',
        'publisher_frames_per_second{stream="lobby"} 4.9',
        'publisher_source_failures_total{stream="lobby"} 1.0',
        'publisher_reconnects_total{stream="lobby"} 2.0',
    ):
        assert line in text, text
    runners.clear()
    text = generate_latest(registry).decode()
    assert "publisher_streams_carried 0.0" in text and 'stream="lobby"' not in text
