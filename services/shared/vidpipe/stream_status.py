"""Each stream's status as the publisher carrying it sees it: the live view's "is this camera up, and where".

A compacted topic (STATUS_TOPIC, `video.streams.status.v1`): the key is the stream id, the value a StreamStatus
as JSON. The publisher pod carrying a stream refreshes its status every few seconds (`every_s`); when the pod
stops carrying it, it writes `stopped` (revoked to another pod, disabled, pod shutting down), or a tombstone
when the stream was removed from the registry. A pod that dies writes nothing more: its last status goes stale
(`updated_unix_s` older than a few `every_s`) until the stream's next owner writes one. Errors are redacted
before they are written (never a credential of a source URL).

Compaction keeps the latest status of every stream; time-based deletion also drops statuses nobody refreshed
for a day (a stream whose every publisher is gone), so readers reading from the start see only recent ones.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .contract import TopicSpec
from .stream_registry import StreamId

STATUS_TOPIC = "video.streams.status.v1"
STATUS_PARTITIONS = 3
STATUS_RETENTION_MS = 24 * 3600 * 1000

# connecting: opening the source (first attempt, or again after it ended); publishing: frames flow; failed:
# the source could not be read (last_error says why) and is retried with backoff; finished: a file source
# without loop reached its end; stopped: this pod no longer carries the stream.
StreamState = Literal["connecting", "publishing", "failed", "finished", "stopped"]


def status_topic_spec(topic: str = STATUS_TOPIC, partitions: int = STATUS_PARTITIONS) -> TopicSpec:
    """Compacted and deleted after a day; segments roll hourly so compaction keeps the topic small although
    every stream writes every few seconds."""
    return TopicSpec(
        topic,
        partitions,
        {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(STATUS_RETENTION_MS),
            "segment.ms": str(3600 * 1000),
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": str(3600 * 1000),
        },
    )


class StreamStatus(BaseModel):
    """One stream's status. Readers ignore fields they do not know (a newer publisher may add some)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    stream_id: StreamId
    state: StreamState
    pod: str = Field(max_length=253, description="The publisher pod carrying the stream")
    fps: float = Field(default=0.0, ge=0.0, description="Frames published per second, over the last interval")
    frames_published: int = Field(default=0, ge=0, description="Since this pod started carrying the stream")
    last_frame_unix_s: float | None = Field(default=None, description="Wall time of the last frame published")
    last_frame_age_s: float | None = Field(default=None, ge=0.0, description="Seconds since then, when written")
    last_error: str | None = Field(default=None, max_length=2000, description="Redacted: never a credential")
    epoch: int | None = Field(default=None, description="The current run's epoch (frame identity with seq)")
    updated_unix_s: float = Field(description="When this status was written")
    every_s: float = Field(gt=0.0, description="How often the pod refreshes it: older than a few of these is stale")


def encode_status(status: StreamStatus) -> bytes:
    return json.dumps(status.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


class StatusError(ValueError):
    """A status record that breaks the contract."""


def decode_status(key: bytes | None, value: bytes | None) -> tuple[str, StreamStatus | None]:
    """(stream id, status) of a status record; None for a tombstone (the stream was removed)."""
    if not key:
        raise StatusError("a status record needs the stream id as its key")
    stream_id = key.decode("utf-8", "replace")
    if value is None:
        return stream_id, None
    try:
        status = StreamStatus.model_validate(json.loads(value))
    except (ValueError, ValidationError) as exc:
        raise StatusError(f"status of {stream_id}: {exc}") from None
    if status.stream_id != stream_id:
        raise StatusError(f"status of {stream_id}: stream_id {status.stream_id!r} differs from the record's key")
    return stream_id, status
