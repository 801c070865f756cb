"""The stream registry's contract: definitions validated wherever they come from, with the field named;
credentials refused; plans that make the registry match a file; and, against the real broker, a writer and
followers that see every definition, every change and every removal."""

from __future__ import annotations

import json
import time

import pytest

from vidpipe.registry_client import RegistryFollower, RegistryWriter
from vidpipe.stream_registry import (
    RegistryError,
    RegistryState,
    StreamDefinition,
    decode_record,
    encode_definition,
    parse_definition,
    parse_streams,
    plan,
    registry_topic_spec,
    source_kind,
)

LOBBY = {
    "id": "lobby",
    "source": "secret:lobby",
    "target_fps": 10,
    "lines": [{"name": "entrance", "start": [0.1, 0.6], "end": [0.9, 0.6]}],
    "zones": [{"name": "desk", "polygon": [[0.5, 0.1], [0.9, 0.1], [0.9, 0.5], [0.5, 0.5]]}],
}


def test_a_definition_keeps_its_fields_and_round_trips_through_a_record():
    definition = parse_definition(LOBBY)
    assert (definition.target_fps, definition.enabled, definition.jpeg_quality) == (10.0, True, 85)
    assert [line.name for line in definition.analytics.lines] == ["entrance"]
    assert decode_record(b"lobby", encode_definition(definition)) == ("lobby", definition)
    assert decode_record(b"lobby", None) == ("lobby", None), "a tombstone removes the stream"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"zones": [{"name": "z", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}]}, "streams[lobby].zones[0].polygon"),
        ({"lines": [{"name": "l", "start": [0.1, 0.1], "end": [1.5, 0.1]}]}, "streams[lobby].lines[0].end"),
        ({"target_fps": 0}, "streams[lobby].target_fps"),
        ({"resize": "big"}, "streams[lobby].resize"),
        ({"colour": "red"}, "streams[lobby].colour"),
        ({"id": "no spaces"}, "streams[no spaces].id"),
    ],
)
def test_a_bad_definition_is_refused_naming_its_key(change, key):
    with pytest.raises(RegistryError) as refused:
        parse_definition(LOBBY | change)
    assert any(problem.startswith(f"{key}:") for problem in refused.value.problems), refused.value.problems


@pytest.mark.parametrize(
    "source",
    [
        "rtsp://admin:hunter22@10.0.0.5:554/stream1",
        "rtsp://10.0.0.5/cam?user=admin&password=hunter22",
        "rtsp://10.0.0.5/user=admin_password=hunter22_channel=1",
    ],
)
def test_credentials_never_enter_the_registry_and_the_refusal_does_not_repeat_them(source):
    with pytest.raises(RegistryError) as refused:
        parse_definition(LOBBY | {"source": source})
    assert "credentials" in str(refused.value) and "hunter22" not in str(refused.value)


def test_source_references():
    assert source_kind("secret:lobby") == "secret"
    assert source_kind("arn:aws:secretsmanager:eu-west-1:123456789012:secret:cams/lobby-AbCdEf") == "secrets_manager"
    assert source_kind("rtsp://10.0.0.5/stream1?channel=1") == "url"
    assert source_kind("/media/sample.mp4") == "path"
    parse_definition(LOBBY | {"source": "rtsp://10.0.0.5/stream1?channel=1"})  # no credentials: fine
    with pytest.raises(RegistryError, match="Kubernetes Secret key"):
        parse_definition(LOBBY | {"source": "secret:no/slashes"})


def test_a_file_with_one_bad_definition_is_refused_whole_with_every_problem():
    bad = LOBBY | {"id": "dock", "zones": [{"name": "z", "polygon": [[0, 0], [0.5, 0]]}]}
    with pytest.raises(RegistryError) as refused:
        parse_streams({"streams": [LOBBY, bad, LOBBY]})
    problems = refused.value.problems
    assert any(p.startswith("streams[dock].zones[0].polygon") for p in problems), problems
    assert any("defined twice" in p for p in problems), problems


def test_a_plan_adds_updates_and_removes_and_says_what_changes():
    lobby = parse_definition(LOBBY)
    dock = parse_definition({"id": "dock", "source": "secret:dock"})
    moved = lobby.model_copy(update={"target_fps": 5.0, "enabled": False})
    gate = parse_definition({"id": "gate", "source": "rtsp://10.0.0.9/live"})
    steps = plan({"lobby": lobby, "dock": dock}, {"lobby": moved, "gate": gate})
    assert [d.id for d in steps.added] == ["gate"] and [d.id for d in steps.removed] == ["dock"]
    assert steps.render().splitlines() == [
        "+ gate (added)",
        "~ lobby: enabled true -> false; target_fps 10.0 -> 5.0",
        "- dock (removed)",
    ]
    assert plan({"dock": dock}, {"lobby": lobby}, prune=False).removed == []
    assert plan({"lobby": lobby}, {"lobby": lobby}).empty


def test_the_state_reports_each_change_once():
    state = RegistryState()
    lobby = parse_definition(LOBBY)
    assert state.apply("lobby", lobby).kind == "added"
    assert state.apply("lobby", lobby) is None
    assert state.apply("lobby", lobby.model_copy(update={"enabled": False})).kind == "updated"
    assert state.enabled() == {}
    assert state.apply("lobby", None).kind == "removed" and state.streams == {}


def test_the_registry_topic_is_compacted():
    spec = registry_topic_spec("s", 6)
    assert spec.config["cleanup.policy"] == "compact" and spec.partitions == 6


@pytest.mark.broker
def test_followers_see_every_definition_change_and_removal_from_the_real_broker(kafka_settings, topics):
    writer = RegistryWriter(kafka_settings, topics.streams)
    lobby = parse_definition(LOBBY)
    writer.put(lobby)
    writer.put(parse_definition({"id": "dock", "source": "secret:dock"}))
    writer.remove("dock")
    early = RegistryFollower(kafka_settings, topics.streams).start()
    changes: list[str] = []
    try:
        assert early.wait_ready(30), "caught up with what the topic held"
        assert early.snapshot() == {"lobby": lobby}
        early.on_change = lambda change: changes.append(f"{change.kind} {change.stream_id}")
        writer.put(lobby.model_copy(update={"target_fps": 2.0}))
        writer.put(StreamDefinition(id="gate", source="secret:gate"))
        # A record that breaks the contract is skipped; the registry still applies.
        from confluent_kafka import Producer

        from vidpipe.kafka import producer_config

        rogue = Producer(producer_config(kafka_settings))
        rogue.produce(topics.streams, key=b"rogue", value=json.dumps({"id": "rogue"}).encode())
        rogue.flush(10)
        writer.remove("lobby")
        deadline = time.monotonic() + 20
        while len(changes) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert changes == ["updated lobby", "added gate", "removed lobby"]
        assert "streams[rogue].source" in early.invalid["rogue"]
        late = RegistryFollower(kafka_settings, topics.streams).start()
        assert late.wait_ready(30) and set(late.snapshot()) == {"gate"}
        late.stop()
    finally:
        early.stop()
        writer.close()


def test_the_cli_reads_the_services_token_from_secrets_manager(monkeypatch):
    """The registry's seed Job in the cluster has no token file: it reads the service's own token secret."""
    import boto3
    from moto import mock_aws

    from vidpipe import streams

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="vidpipe/analytics-token", SecretString=json.dumps({"token": "t" * 32})
        )["ARN"]
        args = streams.parser().parse_args(["--token-secret-arn", arn, "list"])
        assert streams._token(args) == "t" * 32


def test_stream_ids_land_where_java_clients_put_the_same_key():
    """Kafka's murmur2, on the test vectors of Kafka's own UtilsTest (Utils.murmur2), then toPositive % n."""
    from vidpipe.stream_registry import partition_for

    vectors = {
        "21": -973932308,
        "foobar": -790332482,
        "a-little-bit-long-string": -985981536,
        "a-little-bit-longer-string": -1486304829,
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        "abc": 479470107,
    }
    for key, murmur2 in vectors.items():
        assert partition_for(key, 1000) == (murmur2 & 0x7FFFFFFF) % 1000, key
