"""The message contract between publisher, consumer and inference service (schema version 1).

Frames topic: key = stream id (keeps per-stream order within a partition), value = JPEG bytes
(binary, never base64), metadata in headers. Results topic: one JSON document per frame.
Dead-letter topic: the original key, value and headers plus error headers. Events topic (the analytics
service): key = stream id, one JSON document per event (line crossed, zone entered or left, tracker
reset), in each stream's frame order.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = "1"

# Topic names: defaults, overridable per deployment through settings (see env.example).
FRAMES_TOPIC = "video.frames.v1"
RESULTS_TOPIC = "video.results.v1"
DEAD_LETTER_TOPIC = "video.frames.dlq.v1"
CONSUMER_GROUP = "video-inference"
EVENTS_TOPIC = "video.events.v1"
ANALYTICS_GROUP = "video-analytics"
# The group id of the clients that read a compacted topic whole (the registry and status followers): they
# assign every partition themselves and never join or commit, but a Kafka consumer names a group, and on MSK
# IAM its coordinator lookup needs DescribeGroup on that name, so it is a fixed one a grant can name.
READER_GROUP = "vidpipe-readers"
# Partitions per topic unless a deployment says otherwise (TOPICS_PARTITIONS, the CDK context, the
# charts' settings): also the consumer's replica ceiling, since a member beyond it sits idle.
DEFAULT_PARTITIONS = 6

# Size limits. A frame's JPEG may not exceed MAX_FRAME_BYTES; the topics accept records up to
# MAX_MESSAGE_BYTES so an oversized frame from a foreign producer still reaches the consumer,
# which dead-letters it with a reason instead of the broker silently refusing it.
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# A result document may not exceed this (the results topic's default record limit is 1 MB): raw-mode
# outputs larger than MAX_RAW_OUTPUT_VALUES per tensor are summarized, never sent whole.
MAX_RESULT_BYTES = 1_000_000
MAX_RAW_OUTPUT_VALUES = 4096

# Stream ids name Kafka keys, archive folders and metric labels: one rule, applied by the publisher
# (exit 2) and the consumer (dead letter). It starts with a letter or digit, so '.' and '..' never
# become path segments; nothing is mapped or escaped, so two streams never share archive keys.
STREAM_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_STREAM_ID_RE = re.compile(STREAM_ID_PATTERN)

# Header bounds checked at triage: integers fit in 64 bits, capture times are after 2000-01-01 and
# at most a day ahead of the consumer's clock (a far-future timestamp would land in a far-future
# archive partition, or overflow date arithmetic), and no header value is longer than this.
MAX_INT_HEADER = 2**63 - 1
MIN_CAPTURE_TS_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z
MAX_CLOCK_AHEAD_US = 24 * 3600 * 1_000_000
MAX_HEADER_VALUE_BYTES = 256
_TRACEPARENT_RE = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")

JPEG_CONTENT_TYPE = "image/jpeg"
BATCH_CONTENT_TYPE = "application/vnd.vidpipe.jpeg-batch"


class Header:
    """Kafka header names on the frames topic (values are ASCII)."""

    SCHEMA_VERSION = "schema-version"
    STREAM_ID = "stream-id"
    SEQ = "seq"
    # The publisher run that numbered the frame: its start time in microseconds since the Unix epoch.
    # seq restarts with every run, so a frame's identity is (stream-id, epoch, seq); a record without
    # this header (a foreign producer) has epoch 0, and its identity survives no restart.
    EPOCH = "epoch"
    CAPTURE_TS_US = "capture-ts-us"
    WIDTH = "width"
    HEIGHT = "height"
    CONTENT_TYPE = "content-type"
    # W3C trace context (vidpipe.tracing): also on the results and events topics.
    TRACEPARENT = "traceparent"
    TRACESTATE = "tracestate"
    # Added on the dead-letter topic.
    ERROR_REASON = "error-reason"
    ERROR_CODE = "error-code"
    ERROR_STAGE = "error-stage"
    ERROR_ATTEMPTS = "error-attempts"
    # The original value's length, when it was left out because it would not fit the dead-letter topic.
    ERROR_VALUE_DROPPED = "error-value-dropped"
    SOURCE_TOPIC = "source-topic"
    SOURCE_PARTITION = "source-partition"
    SOURCE_OFFSET = "source-offset"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(
    partitions: int = DEFAULT_PARTITIONS,
    frames_retention_ms: int = 6 * 3600 * 1000,
    results_retention_ms: int = 7 * 24 * 3600 * 1000,
    frames_topic: str = FRAMES_TOPIC,
    results_topic: str = RESULTS_TOPIC,
    dead_letter_topic: str = DEAD_LETTER_TOPIC,
    events_topic: str = EVENTS_TOPIC,
    events_retention_ms: int = 7 * 24 * 3600 * 1000,
    dead_letter_retention_ms: int = 7 * 24 * 3600 * 1000,
) -> list[TopicSpec]:
    """The topics the project creates itself (never broker auto-create). Dead letters carry whole frames
    (unless CONSUMER_DEAD_LETTER_PAYLOAD=headers), so their retention is their own setting."""
    big = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    return [
        TopicSpec(frames_topic, partitions, {**big, "retention.ms": str(frames_retention_ms)}),
        TopicSpec(results_topic, partitions, {"retention.ms": str(results_retention_ms)}),
        TopicSpec(dead_letter_topic, partitions, {**big, "retention.ms": str(dead_letter_retention_ms)}),
        TopicSpec(events_topic, partitions, {"retention.ms": str(events_retention_ms)}),
    ]


class ContractError(ValueError):
    """A record does not follow the contract; the message names the field at fault, `code` classifies it
    (the dead-letter topic's error-code header)."""

    def __init__(self, message: str, code: str = "invalid_header", field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field


def is_valid_stream_id(value: str) -> bool:
    return _STREAM_ID_RE.fullmatch(value) is not None


def check_stream_id(value: str) -> str:
    """The stream id, or ValueError saying what is allowed."""
    if not is_valid_stream_id(value):
        raise ValueError(
            f"{value[:140]!r} is not a valid stream id: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def new_traceparent() -> str:
    """A fresh W3C trace context (version 00, not sampled): a frame published without tracing still has a
    trace id, but does not ask the services after it to record its trace (vidpipe.tracing samples)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"


@dataclass(frozen=True, slots=True)
class FrameMeta:
    stream_id: str
    seq: int
    capture_ts_us: int
    width: int
    height: int
    content_type: str = JPEG_CONTENT_TYPE
    traceparent: str = ""
    schema_version: str = SCHEMA_VERSION
    epoch: int = 0

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (Header.SCHEMA_VERSION, self.schema_version.encode()),
            (Header.STREAM_ID, self.stream_id.encode()),
            (Header.EPOCH, str(self.epoch).encode()),
            (Header.SEQ, str(self.seq).encode()),
            (Header.CAPTURE_TS_US, str(self.capture_ts_us).encode()),
            (Header.WIDTH, str(self.width).encode()),
            (Header.HEIGHT, str(self.height).encode()),
            (Header.CONTENT_TYPE, self.content_type.encode()),
            (Header.TRACEPARENT, (self.traceparent or new_traceparent()).encode()),
        ]

    @property
    def key(self) -> bytes:
        return self.stream_id.encode()

    @property
    def identity(self) -> FrameId:
        return FrameId(self.stream_id, self.epoch, self.seq)


class FrameId(NamedTuple):
    """What names one frame over its stream's whole life, across publisher restarts: the deduplication
    key of results and events, and part of every archive key."""

    stream_id: str
    epoch: int
    seq: int


def new_epoch() -> int:
    """A publisher run's epoch: now, in microseconds since the Unix epoch."""
    return time.time_ns() // 1000


_REQUIRED_INT_HEADERS = (Header.SEQ, Header.CAPTURE_TS_US, Header.WIDTH, Header.HEIGHT)


def parse_frame_headers(headers: Sequence[tuple[str, bytes | None]] | None, now_us: int | None = None) -> FrameMeta:
    """Parse and validate frame headers; raises ContractError naming the header at fault.

    now_us: the reader's clock, against which capture-ts-us may be at most a day ahead.
    """
    values: dict[str, str] = {}
    for name, raw in headers or ():
        if raw is None:
            continue
        if len(raw) > MAX_HEADER_VALUE_BYTES:
            raise ContractError(
                f"header {name[:64]!r} is {len(raw)} bytes, over the limit of {MAX_HEADER_VALUE_BYTES}", field=name
            )
        try:
            values[name] = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ContractError(f"header {name[:64]!r} is not ASCII", field=name) from None
    version = values.get(Header.SCHEMA_VERSION)
    if version is None:
        raise ContractError(f"header {Header.SCHEMA_VERSION!r} is missing")
    if version != SCHEMA_VERSION:
        raise ContractError(f"header {Header.SCHEMA_VERSION!r} is {version!r}; this consumer reads {SCHEMA_VERSION!r}")
    stream_id = values.get(Header.STREAM_ID, "")
    if not stream_id:
        raise ContractError(f"header {Header.STREAM_ID!r} is missing or empty", field=Header.STREAM_ID)
    if not is_valid_stream_id(stream_id):
        raise ContractError(
            f"header {Header.STREAM_ID!r} is {stream_id[:140]!r}: use 1-128 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit",
            code="invalid_stream_id",
            field=Header.STREAM_ID,
        )
    ints: dict[str, int] = {Header.EPOCH: 0}
    for name in (*_REQUIRED_INT_HEADERS, Header.EPOCH):
        text = values.get(name)
        if text is None:
            if name == Header.EPOCH:
                continue
            raise ContractError(f"header {name!r} is missing", field=name)
        if not text.isdigit() or len(text) > 19:  # plain decimal digits: no sign, spaces, '_' or exponent
            raise ContractError(f"header {name!r} is not a non-negative 64-bit integer: {text[:40]!r}", field=name)
        ints[name] = int(text)
        if ints[name] > MAX_INT_HEADER:
            raise ContractError(f"header {name!r} is {ints[name]}, over the 64-bit limit", field=name)
    for name in (Header.WIDTH, Header.HEIGHT):
        if not 1 <= ints[name] <= 65535:
            raise ContractError(f"header {name!r} is {ints[name]}: an image side is 1-65535 pixels", field=name)
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    capture = ints[Header.CAPTURE_TS_US]
    if capture < MIN_CAPTURE_TS_US or capture > now_us + MAX_CLOCK_AHEAD_US:
        raise ContractError(
            f"header {Header.CAPTURE_TS_US!r} is {capture}: expected microseconds since the epoch, "
            "after 2000-01-01 and at most a day ahead of this consumer's clock",
            code="invalid_timestamp",
            field=Header.CAPTURE_TS_US,
        )
    content_type = values.get(Header.CONTENT_TYPE, JPEG_CONTENT_TYPE)
    if content_type != JPEG_CONTENT_TYPE:
        raise ContractError(f"header {Header.CONTENT_TYPE!r} is {content_type!r}; expected {JPEG_CONTENT_TYPE!r}")
    return FrameMeta(
        stream_id=stream_id,
        seq=ints[Header.SEQ],
        capture_ts_us=ints[Header.CAPTURE_TS_US],
        width=ints[Header.WIDTH],
        height=ints[Header.HEIGHT],
        content_type=content_type,
        # An invalid trace context is ignored, as W3C Trace Context asks: the frame is still good.
        traceparent=tp if _TRACEPARENT_RE.fullmatch(tp := values.get(Header.TRACEPARENT, "")) else "",
        schema_version=version,
        epoch=ints[Header.EPOCH],
    )


def dead_letter_headers(
    original: Sequence[tuple[str, bytes | None]] | None,
    reason: str,
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    code: str = "invalid_record",
    attempts: int = 1,
) -> list[tuple[str, bytes]]:
    """The original headers, untouched, plus why (text and code), where and after how many attempts the
    record failed."""
    kept = [(k, v if v is not None else b"") for k, v in (original or ())]
    return kept + [
        (Header.ERROR_REASON, reason.encode("utf-8", "replace")[:1024]),
        (Header.ERROR_CODE, code.encode("ascii", "replace")[:64]),
        (Header.ERROR_ATTEMPTS, str(attempts).encode()),
        (Header.ERROR_STAGE, stage.encode()),
        (Header.SOURCE_TOPIC, topic.encode()),
        (Header.SOURCE_PARTITION, str(partition).encode()),
        (Header.SOURCE_OFFSET, str(offset).encode()),
    ]


def header_dict(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers or ()}


# --- Results -------------------------------------------------------------------------------


class Detection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    class_id: int = Field(ge=0)
    label: str
    score: float = Field(ge=0.0, le=1.0)
    box: list[float] = Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] in source-frame pixels")


class RawOutput(BaseModel):
    """One output tensor of a model served in raw mode, for one frame. `data` holds the values as nested
    lists when the tensor has at most MAX_RAW_OUTPUT_VALUES of them; larger tensors carry only their
    summary (min, max, mean), so a heatmap model never writes megabytes per frame."""

    model_config = ConfigDict(extra="forbid")

    shape: list[int]
    dtype: str
    data: Any = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None


class FrameResult(BaseModel):
    """One document on the results topic (JSON), one per processed frame: `detections` from a detector,
    `outputs` (output name -> tensor) from a model served in raw mode."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: str = SCHEMA_VERSION
    stream_id: str
    epoch: int = Field(default=0, ge=0, description="The publisher run that numbered the frame (header 'epoch')")
    seq: int = Field(ge=0)
    capture_ts_us: int = Field(ge=0)
    processed_ts_us: int = Field(ge=0)
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    model_name: str
    model_version: str
    model_ms: float = Field(default=0.0, ge=0.0, description="The model run of the batch that held this frame")
    request_ms: float = Field(ge=0.0, description="The whole inference request: waiting, decoding and the model")
    detections: list[Detection]
    outputs: dict[str, RawOutput] | None = None
    traceparent: str = ""

    @property
    def identity(self) -> FrameId:
        return FrameId(self.stream_id, self.epoch, self.seq)


def encode_result(result: dict[str, Any]) -> bytes:
    """Serialize a result dict (fields of FrameResult) to the results-topic value."""
    return orjson.dumps(result)


def decode_result(value: bytes) -> FrameResult:
    return FrameResult.model_validate_json(value)


# --- Events (the analytics service) ------------------------------------------------------------
# One JSON document per event on EVENTS_TOPIC, key = stream id. Every event names the frame that
# caused it (seq, capture time) and when it was emitted. Directions are relative to the line as
# configured, from `start` to `end` in image coordinates (x right, y down): "in" is a crossing from
# the line's left-hand side to its right-hand side (as seen walking from start to end), "out" the
# reverse. Track ids are per stream and per tracker life: a tracker_reset event starts a new life.


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = SCHEMA_VERSION
    stream_id: str
    epoch: int = Field(default=0, ge=0, description="With seq: the frame whose result produced the event")
    seq: int = Field(ge=0, description="The frame whose result produced the event")
    capture_ts_us: int = Field(ge=0)
    emitted_ts_us: int = Field(ge=0)


class _TrackEvent(_Event):
    track_id: int = Field(ge=0)
    class_id: int = Field(ge=0)
    label: str


class LineCrossed(_TrackEvent):
    type: Literal["line_crossed"] = "line_crossed"
    line: str
    direction: Literal["in", "out"]


class ZoneEntered(_TrackEvent):
    type: Literal["zone_entered"] = "zone_entered"
    zone: str


class ZoneLeft(_TrackEvent):
    type: Literal["zone_left"] = "zone_left"
    zone: str
    dwell_s: float = Field(ge=0.0, description="Capture time from entering to leaving the zone")


class TrackerReset(_Event):
    """The stream's tracker started afresh (start-up, a partition assigned, a gap in the frames):
    earlier track ids are not continued, and zone occupancy is forgotten without zone_left events."""

    type: Literal["tracker_reset"] = "tracker_reset"
    reason: str


AnalyticsEvent = Annotated[LineCrossed | ZoneEntered | ZoneLeft | TrackerReset, Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[LineCrossed | ZoneEntered | ZoneLeft | TrackerReset] = TypeAdapter(AnalyticsEvent)


def encode_event(event: LineCrossed | ZoneEntered | ZoneLeft | TrackerReset) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def decode_event(value: bytes) -> LineCrossed | ZoneEntered | ZoneLeft | TrackerReset:
    return _EVENT_ADAPTER.validate_json(value)


# --- Batch body for the inference service -----------------------------------------------------
# A batch is the concatenation of (uint32 big-endian length, JPEG bytes) items: binary like the
# frames topic, so the consumer forwards record values without re-encoding them.

_LEN = struct.Struct(">I")


def encode_batch(images: Iterable[bytes]) -> bytes:
    parts: list[bytes] = []
    for image in images:
        parts.append(_LEN.pack(len(image)))
        parts.append(image)
    return b"".join(parts)


def decode_batch(body: bytes | bytearray, max_items: int, max_item_bytes: int = MAX_FRAME_BYTES) -> list[memoryview]:
    """Split a batch body; raises ContractError naming the item at fault."""
    view = memoryview(body)
    items: list[memoryview] = []
    pos = 0
    while pos < len(view):
        if len(items) >= max_items:
            raise ContractError(f"batch has more than {max_items} items")
        if pos + 4 > len(view):
            raise ContractError(f"batch item {len(items)}: truncated length prefix")
        (length,) = _LEN.unpack_from(view, pos)
        pos += 4
        if length == 0:
            raise ContractError(f"batch item {len(items)}: empty image")
        if length > max_item_bytes:
            raise ContractError(f"batch item {len(items)}: {length} bytes exceeds the limit of {max_item_bytes}")
        if pos + length > len(view):
            raise ContractError(f"batch item {len(items)}: declares {length} bytes but only {len(view) - pos} remain")
        items.append(view[pos : pos + length])
        pos += length
    if not items:
        raise ContractError("batch is empty")
    return items
