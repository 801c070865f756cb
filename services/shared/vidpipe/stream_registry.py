"""The stream registry: the one source of truth for which cameras exist and what is done with them.

A compacted topic (STREAMS_TOPIC, `video.streams.v1`): the key is the stream id, the value its definition as
JSON (StreamDefinition: source reference, target frames/s, resize, JPEG quality, lines, zones, enabled), and a
tombstone (null value) removes the stream. Compaction keeps the latest definition of every stream forever, so
any reader that reads the topic from its start knows every stream. The publishers share the streams through
Kafka's group protocol on this topic (each pod carries the streams keyed to the partitions it is assigned);
the analytics service follows all of it (lines and zones, and the control API that writes it).

Credentials never go into the registry: a source is a reference to a secret (`secret:<key>`, a key of the
camera Secret mounted into the publishers; or a Secrets Manager ARN) or a URL without credentials. A
definition is validated by the same code wherever it comes from (the API, `apply -f`, the charts' seed, a
record read back), and a refusal names the field, e.g. `streams[lobby].zones[0].polygon`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .analytics_config import LineSpec, StreamAnalytics, ZoneSpec
from .contract import STREAM_ID_PATTERN, TopicSpec
from .redact import credentials_in, split_url
from .secrets import SECRET_ARN

STREAMS_TOPIC = "video.streams.v1"
# The publisher group's parallelism: a pod carries the streams of the partitions it is assigned, so at most
# this many publisher pods carry streams. Stream ids spread over partitions by Kafka's key hash.
REGISTRY_PARTITIONS = 24
SECRET_PREFIX = "secret:"
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")  # a Kubernetes Secret key
_RESIZE = re.compile(r"[1-9]\d{0,4}(x[1-9]\d{0,4})?")

StreamId = Annotated[str, Field(pattern=f"^{STREAM_ID_PATTERN}$")]


def partition_for(stream_id: str, partitions: int) -> int:
    """The registry partition a stream id lands in: Kafka's default partitioner for keyed records (murmur2,
    as Java clients, Kafka Connect and the console producer place keys; the writer asks librdkafka for the
    same), so a record written by any Kafka tool replaces the stream's definition instead of duplicating it
    in another partition."""
    data = stream_id.encode()
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    for i in range(0, len(data) - len(data) % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[len(data) - len(data) % 4 :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def registry_topic_spec(topic: str = STREAMS_TOPIC, partitions: int = REGISTRY_PARTITIONS) -> TopicSpec:
    """Compacted: the latest definition per stream is kept forever; tombstones go after a day (a reader that
    was away longer than that still sees the stream gone, because it rebuilds from the start)."""
    return TopicSpec(
        topic,
        partitions,
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "delete.retention.ms": str(24 * 3600 * 1000)},
    )


def source_kind(source: str) -> str:
    """secret (a key of the mounted camera Secret), secrets_manager, url, webcam or path."""
    if source.startswith(SECRET_PREFIX):
        return "secret"
    if source.startswith("arn:"):
        return "secrets_manager"
    if split_url(source) is not None:
        return "url"
    if source.isdigit() or source.startswith("webcam:"):
        return "webcam"
    return "path"


def check_source(source: str) -> str:
    """The source reference, or ValueError saying what is wrong without repeating the value (it may be a
    URL someone put a password in)."""
    kind = source_kind(source)
    if kind == "secret":
        key = source.removeprefix(SECRET_PREFIX)
        if not _SECRET_KEY.match(key):
            raise ValueError("secret:<key> needs a Kubernetes Secret key (letters, digits, '-', '_', '.')")
    elif kind == "secrets_manager":
        if not SECRET_ARN.match(source):
            raise ValueError(
                "not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>)"
            )
    elif kind == "url":
        found = credentials_in(source)
        if found:
            raise ValueError(
                f"the URL carries credentials ({', '.join(found)}); credentials never go into the registry: "
                "put the URL in the camera Secret and give secret:<key>, or a Secrets Manager ARN"
            )
    return source


class StreamDefinition(BaseModel):
    """One stream, as the registry holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StreamId
    source: str = Field(min_length=1, max_length=2048, description="secret:<key>, a Secrets Manager ARN, or a URL")
    enabled: bool = True
    target_fps: float = Field(default=5.0, gt=0.0, le=60.0, description="frames/s sampled from the source")
    resize: str | None = Field(default=None, description="WIDTHxHEIGHT, or WIDTH to keep the aspect ratio")
    jpeg_quality: int = Field(default=85, ge=1, le=100)
    loop: bool = Field(default=False, description="restart a file source at its end (recordings, demos)")
    lines: list[LineSpec] = Field(default_factory=list)
    zones: list[ZoneSpec] = Field(default_factory=list)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return check_source(value)

    @field_validator("resize")
    @classmethod
    def _resize(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _RESIZE.fullmatch(value):
            raise ValueError("not WIDTHxHEIGHT or WIDTH (e.g. 1280x720)")
        return value

    @model_validator(mode="after")
    def _regions(self) -> Self:
        StreamAnalytics(lines=self.lines, zones=self.zones)  # unique names, as for the analytics section
        return self

    @property
    def analytics(self) -> StreamAnalytics:
        return StreamAnalytics(lines=self.lines, zones=self.zones)

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class RegistryError(ValueError):
    """Every problem of one or more definitions, each named by its key (streams[<id>].<field>)."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid stream definition:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


def _key(where: str, loc: Iterable[int | str]) -> str:
    key = where
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


def _problems(exc: ValidationError, where: str) -> list[str]:
    problems = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{_key(where, err['loc'])}: {message}")
    return problems


def parse_definition(data: Any, where: str | None = None) -> StreamDefinition:
    """A definition from its JSON/YAML form, or RegistryError naming each field at fault."""
    if not isinstance(data, Mapping):
        raise RegistryError([f"{where or 'stream'}: expected a mapping, got {type(data).__name__}"])
    name = data.get("id")
    where = where or (f"streams[{name}]" if isinstance(name, str) else "stream")
    try:
        return StreamDefinition.model_validate(dict(data))
    except ValidationError as exc:
        raise RegistryError(_problems(exc, where)) from None


def parse_streams(document: Any, where: str = "streams") -> dict[str, StreamDefinition]:
    """The definitions of a streams file ({"streams": [definition, ...]}): all valid, or RegistryError
    listing every problem (nothing is applied from a file with one bad definition)."""
    if isinstance(document, Mapping):
        unknown = sorted(set(document) - {"streams"})
        if unknown:
            raise RegistryError([f"{name}: unknown section (a streams file has 'streams')" for name in unknown])
        document = document.get("streams") or []
    if not isinstance(document, list):
        raise RegistryError([f"{where}: expected a list of stream definitions"])
    problems: list[str] = []
    found: dict[str, StreamDefinition] = {}
    for index, entry in enumerate(document):
        name = entry.get("id") if isinstance(entry, Mapping) else None
        key = f"{where}[{name}]" if isinstance(name, str) and name else f"{where}[{index}]"
        try:
            definition = parse_definition(entry, key)
        except RegistryError as exc:
            problems += exc.problems
            continue
        if definition.id in found:
            problems.append(f"{key}.id: {definition.id!r} is defined twice")
        found[definition.id] = definition
    if problems:
        raise RegistryError(problems)
    return found


def encode_definition(definition: StreamDefinition) -> bytes:
    return json.dumps(definition.document(), sort_keys=True, separators=(",", ":")).encode()


def decode_record(key: bytes | None, value: bytes | None) -> tuple[str, StreamDefinition | None]:
    """(stream id, definition) of a registry record; None for a tombstone. RegistryError for a record that
    breaks the contract (its key and value must agree)."""
    if not key:
        raise RegistryError(["key: a registry record needs the stream id as its key"])
    stream_id = key.decode("utf-8", "replace")
    if value is None:
        return stream_id, None
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise RegistryError([f"streams[{stream_id}]: the value is not JSON ({exc})"]) from None
    definition = parse_definition(data, f"streams[{stream_id}]")
    if definition.id != stream_id:
        raise RegistryError([f"streams[{stream_id}].id: {definition.id!r} differs from the record's key"])
    return stream_id, definition


@dataclass(frozen=True)
class Change:
    stream_id: str
    before: StreamDefinition | None
    after: StreamDefinition | None

    @property
    def kind(self) -> str:
        return "added" if self.before is None else "removed" if self.after is None else "updated"


@dataclass
class RegistryState:
    """The registry as read so far (pure): records in, changes out."""

    streams: dict[str, StreamDefinition] = field(default_factory=dict)
    version: int = 0

    def apply(self, stream_id: str, definition: StreamDefinition | None) -> Change | None:
        before = self.streams.get(stream_id)
        if before == definition:
            return None
        if definition is None:
            del self.streams[stream_id]
        else:
            self.streams[stream_id] = definition
        self.version += 1
        return Change(stream_id, before, definition)

    def enabled(self) -> dict[str, StreamDefinition]:
        return {k: v for k, v in self.streams.items() if v.enabled}


@dataclass(frozen=True)
class Plan:
    """What makes the registry match a desired set: per stream, added, updated (with the fields that change)
    or removed."""

    added: list[StreamDefinition]
    updated: list[tuple[StreamDefinition, StreamDefinition]]
    removed: list[StreamDefinition]
    unchanged: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.removed)

    def render(self) -> str:
        lines = [f"+ {d.id} (added)" for d in self.added]
        for before, after in self.updated:
            old, new = before.document(), after.document()
            changed = [k for k in new if old.get(k) != new.get(k)]
            lines.append(f"~ {after.id}: " + "; ".join(_change_text(k, old.get(k), new.get(k)) for k in changed))
        lines += [f"- {d.id} (removed)" for d in self.removed]
        return "\n".join(lines) if lines else "no changes"


def _change_text(key: str, before: Any, after: Any) -> str:
    if key == "source":
        return "source changed"  # a reference, but shown by kind only, like everywhere else
    if key in ("lines", "zones"):
        names_before = [r["name"] for r in before or []]
        names_after = [r["name"] for r in after or []]
        return f"{key} {names_before} -> {names_after}" if names_before != names_after else f"{key} moved"
    return f"{key} {json.dumps(before)} -> {json.dumps(after)}"


def plan(current: Mapping[str, StreamDefinition], desired: Mapping[str, StreamDefinition], prune: bool = True) -> Plan:
    """The changes that make `current` equal `desired` (with prune=False, streams not in `desired` stay)."""
    added = [d for k, d in sorted(desired.items()) if k not in current]
    updated = [(current[k], d) for k, d in sorted(desired.items()) if k in current and current[k] != d]
    unchanged = [k for k, d in sorted(desired.items()) if current.get(k) == d]
    removed = [d for k, d in sorted(current.items()) if prune and k not in desired]
    return Plan(added, updated, removed, unchanged)
