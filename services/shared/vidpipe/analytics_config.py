"""Lines and zones per stream: the `analytics` section of the streams configuration.

The same YAML document lists the cameras (`streams`, read by the charts for the publishers) and, keyed
by stream name, what the analytics service counts on each:

    streams:
      - name: lobby
    analytics:
      lobby:
        lines:
          - name: entrance
            start: [0.10, 0.60]     # normalized: x / frame width, y / frame height, both in [0, 1]
            end: [0.90, 0.60]
        zones:
          - name: queue
            polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]

The charts validate it at synth and the analytics service again at start-up; a bad definition (a
coordinate out of range, a self-intersecting polygon, a stream that is not configured, a repeated name)
is refused with its key named, e.g. `analytics.lobby.zones[0].polygon`. Directions are defined in
vidpipe.contract (events).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .contract import STREAM_ID_PATTERN
from .geometry import Point, segments_intersect

# Names become Prometheus label values and event fields: short and plain.
REGION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"

RegionName = Annotated[str, Field(pattern=REGION_NAME_PATTERN)]


def _check_point(point: Point) -> Point:
    for axis, value in zip("xy", point, strict=True):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{axis}={value} is outside [0, 1] (coordinates are normalized to the frame)")
    return point


def polygon_area(points: list[Point]) -> float:
    return abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(points, points[1:] + points[:1], strict=True))) / 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineSpec(_Strict):
    name: RegionName
    start: Point
    end: Point

    @field_validator("start", "end")
    @classmethod
    def _in_frame(cls, value: Point) -> Point:
        return _check_point(value)

    @model_validator(mode="after")
    def _has_length(self) -> Self:
        if self.start == self.end:
            raise ValueError("start and end are the same point: a line needs two distinct points")
        return self


class ZoneSpec(_Strict):
    name: RegionName
    polygon: list[Point] = Field(min_length=3, max_length=64)

    @field_validator("polygon")
    @classmethod
    def _simple_polygon(cls, points: list[Point]) -> list[Point]:
        for index, point in enumerate(points):
            try:
                _check_point(point)
            except ValueError as exc:
                raise ValueError(f"point {index}: {exc}") from None
        edges = list(zip(points, points[1:] + points[:1], strict=True))
        for i, (a1, a2) in enumerate(edges):
            for j in range(i + 1, len(edges)):
                if j == i + 1 or (i == 0 and j == len(edges) - 1):
                    continue  # neighbours share a vertex by construction
                b1, b2 = edges[j]
                if segments_intersect(a1, a2, b1, b2):
                    raise ValueError(f"the polygon intersects itself (edge {i} crosses edge {j})")
        if polygon_area(points) <= 1e-9:
            raise ValueError("the polygon has no area")
        return points


class StreamAnalytics(_Strict):
    lines: list[LineSpec] = Field(default_factory=list)
    zones: list[ZoneSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        for kind, names in (("lines", [x.name for x in self.lines]), ("zones", [x.name for x in self.zones])):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{kind}: names must be unique; repeated: {', '.join(repeated)}")
        return self


class AnalyticsConfig(_Strict):
    """Stream name -> lines and zones. Streams without an entry are tracked, with no lines or zones."""

    streams: dict[Annotated[str, Field(pattern=f"^{STREAM_ID_PATTERN}$")], StreamAnalytics] = Field(
        default_factory=dict
    )

    def for_stream(self, stream_id: str) -> StreamAnalytics:
        return self.streams.get(stream_id) or StreamAnalytics()

    def frame_rate_for(self, stream_id: str) -> int | None:
        """A streams file names no frame rates: the analytics service's own setting applies."""
        return None


class AnalyticsConfigError(ValueError):
    """Every problem of an analytics configuration, each named by its key (analytics.<stream>.<...>)."""


def _key(loc: Iterable[int | str]) -> str:
    key = "analytics"
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


def parse_analytics(section: Mapping[str, Any] | None, known_streams: Iterable[str] | None = None) -> AnalyticsConfig:
    """Validate an `analytics` section. With `known_streams`, an entry for any other stream is refused."""
    problems: list[str] = []
    if section is not None and not isinstance(section, Mapping):
        raise AnalyticsConfigError(f"analytics: expected a mapping of stream name to lines and zones, got {section!r}")
    section = dict(section or {})
    if known_streams is not None:
        known = sorted(set(known_streams))
        for name in section:
            if name not in known:
                problems.append(f"analytics.{name}: unknown stream (configured: {', '.join(known) or 'none'})")
    try:
        config = AnalyticsConfig.model_validate({"streams": section})
    except ValidationError as exc:
        for err in exc.errors():
            loc = list(err["loc"])[1:]  # drop "streams"
            # pydantic puts a failed key check under [name, "[key]"]: report the stream key itself
            loc = [p for p in loc if p != "[key]"]
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_key(loc)}: {message}")
        config = AnalyticsConfig()
    if problems:
        raise AnalyticsConfigError("invalid analytics configuration:\n" + "\n".join(f"  {p}" for p in problems))
    return config


def load_streams_file(path: str | Path) -> AnalyticsConfig:
    """Read a streams configuration file (YAML or JSON) and return its validated `analytics` section;
    the stream names it may name are those of its `streams` list."""
    import yaml  # only the service that reads files needs PyYAML

    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AnalyticsConfigError(f"{path}: cannot read the streams configuration: {exc}") from None
    if not isinstance(document, dict):
        raise AnalyticsConfigError(f"{path}: expected a mapping with 'streams' and 'analytics'")
    streams = document.get("streams") or []
    if not isinstance(streams, list):
        raise AnalyticsConfigError(f"{path}: streams: expected a list of streams")
    names: list[str] = []
    for index, stream in enumerate(streams):
        name = (stream.get("name") or stream.get("id")) if isinstance(stream, dict) else stream
        if not isinstance(name, str):
            raise AnalyticsConfigError(f"{path}: streams[{index}].name: required")
        names.append(name)
    return parse_analytics(document.get("analytics"), known_streams=names)
