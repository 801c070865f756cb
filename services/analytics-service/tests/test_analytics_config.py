"""The lines-and-zones configuration: every bad definition is refused with its key named."""

from __future__ import annotations

import pytest

from vidpipe.analytics_config import AnalyticsConfigError, StreamAnalytics, load_streams_file, parse_analytics

LINE = {"name": "entrance", "start": [0.1, 0.6], "end": [0.9, 0.6]}
ZONE = {"name": "queue", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]}


def problems(section, known=None) -> str:
    with pytest.raises(AnalyticsConfigError) as caught:
        parse_analytics(section, known_streams=known)
    return str(caught.value)


def test_a_valid_section_parses_to_lines_and_zones():
    config = parse_analytics({"lobby": {"lines": [LINE], "zones": [ZONE]}}, known_streams=["lobby", "yard"])
    lobby = config.for_stream("lobby")
    assert lobby.lines[0].start == (0.1, 0.6) and lobby.zones[0].polygon[2] == (0.5, 0.5)
    assert config.for_stream("yard") == StreamAnalytics()  # configured camera, nothing to count
    assert parse_analytics(None) == parse_analytics({})


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"lobby": {"lines": [{**LINE, "end": [1.2, 0.6]}]}}, "analytics.lobby.lines[0].end"),
        ({"lobby": {"lines": [{**LINE, "start": [0.1, -0.01]}]}}, "analytics.lobby.lines[0].start"),
        (
            {"lobby": {"zones": [{**ZONE, "polygon": [[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]}]}},
            "analytics.lobby.zones[0].polygon",
        ),
    ],
)
def test_a_coordinate_out_of_the_frame_is_refused_by_key(section, key):
    message = problems(section)
    assert key in message and "outside [0, 1]" in message


def test_a_self_intersecting_polygon_is_refused_by_key():
    bow_tie = [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]
    message = problems({"lobby": {"zones": [ZONE, {"name": "tie", "polygon": bow_tie}]}})
    assert "analytics.lobby.zones[1].polygon" in message and "intersects itself" in message


def test_a_polygon_touching_itself_is_refused_too():
    # Vertex 3 lies on edge 0: closed segments, so touching counts as intersecting.
    touching = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.3, 0.1], [0.1, 0.5]]
    message = problems({"lobby": {"zones": [{"name": "pinch", "polygon": touching}]}})
    assert "analytics.lobby.zones[0].polygon" in message and "intersects itself" in message


def test_an_unknown_stream_is_refused_by_key():
    message = problems({"lobby": {"lines": [LINE]}, "garage": {}}, known=["lobby"])
    assert "analytics.garage: unknown stream (configured: lobby)" in message


def test_repeated_names_are_refused_by_key():
    message = problems({"lobby": {"lines": [LINE, {**LINE, "start": [0.2, 0.2]}], "zones": [ZONE, ZONE]}})
    assert "analytics.lobby" in message and "lines: names must be unique; repeated: entrance" in message
    message = problems({"lobby": {"zones": [ZONE, ZONE]}})
    assert "zones: names must be unique; repeated: queue" in message


def test_degenerate_shapes_and_bad_names_are_refused_by_key():
    assert "analytics.lobby.lines[0]" in problems({"lobby": {"lines": [{**LINE, "end": LINE["start"]}]}})
    flat = {"name": "flat", "polygon": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]}
    assert "analytics.lobby.zones[0].polygon" in problems({"lobby": {"zones": [flat]}})
    assert "analytics.lobby.lines[0].name" in problems({"lobby": {"lines": [{**LINE, "name": "no spaces"}]}})
    assert "analytics.lobby.lines[0].colour" in problems({"lobby": {"lines": [{**LINE, "colour": "red"}]}})


def test_every_problem_is_listed_at_once():
    message = problems({"lobby": {"lines": [{**LINE, "end": [2, 0.6]}], "zones": [{**ZONE, "name": "bad name"}]}})
    assert "analytics.lobby.lines[0].end" in message and "analytics.lobby.zones[0].name" in message


def test_streams_file_names_the_cameras_its_analytics_may_use(tmp_path):
    path = tmp_path / "streams.yaml"
    path.write_text(
        "streams:\n  - name: lobby\n  - id: yard\nanalytics:\n  lobby:\n    lines:\n"
        "      - {name: entrance, start: [0.1, 0.6], end: [0.9, 0.6]}\n  yard: {}\n"
    )
    config = load_streams_file(path)
    assert [line.name for line in config.for_stream("lobby").lines] == ["entrance"]
    path.write_text("streams:\n  - name: lobby\nanalytics:\n  garage: {}\n")
    with pytest.raises(AnalyticsConfigError, match="analytics.garage: unknown stream"):
        load_streams_file(path)
    with pytest.raises(AnalyticsConfigError, match="cannot read"):
        load_streams_file(tmp_path / "missing.yaml")
