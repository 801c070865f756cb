from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidpipe.contract import MAX_INT_HEADER, check_stream_id
from vidpipe.logs import LogFormat

from .source_secret import SECRET_ARN


class Pace(StrEnum):
    SOURCE = "source"  # publish at the source's own frame rate (a recording behaves like a camera)
    FAST = "fast"  # as fast as frames can be read and sent


class Mode(StrEnum):
    SINGLE = "single"  # one process, one stream: the source given here
    REGISTRY = "registry"  # a member of the publisher group: carries its share of the registry's streams


class PublisherSettings(BaseSettings):
    """PUBLISHER_* variables (see env.example); each has a matching command-line option."""

    model_config = SettingsConfigDict(env_prefix="PUBLISHER_", env_ignore_empty=True, extra="ignore")

    mode: Mode = Field(
        default=Mode.SINGLE, description="single: the one source given here; registry: streams from the registry"
    )
    # Exactly one of source, source_file and source_secret_arn (checked at start-up, see
    # __main__.resolve_source). Never validated here: a validation message would echo the value, and a URL
    # may hold credentials.
    source: str | None = Field(
        default=None, description="Video file, rtsp:// URL, webcam index (0 or webcam:0) or image folder"
    )
    source_file: str | None = Field(
        default=None,
        description="A file holding the source (a mounted Kubernetes Secret): the URL itself, or JSON with 'source'",
    )
    source_secret_arn: str | None = Field(
        default=None, description="AWS Secrets Manager secret ARN whose string (or JSON key 'source') is the source"
    )
    stream_id: str | None = Field(default=None, description="Defaults to a name derived from the source")
    target_fps: float = Field(default=0.0, ge=0.0, le=1000.0, description="Sample down to this rate (0 = every frame)")
    max_frames: int = Field(default=0, ge=0, description="Stop after this many published frames (0 = no limit)")
    loop: bool = Field(default=False, description="Restart file and folder sources at the end")
    resize: str | None = Field(default=None, description="WIDTHxHEIGHT, or WIDTH to keep the aspect ratio")
    jpeg_quality: int = Field(default=85, ge=1, le=100)
    pace: Pace = Pace.SOURCE
    speed: float = Field(
        default=1.0, gt=0.0, le=1000.0, description="With pace=source: play at this multiple of the source rate"
    )
    start_seq: int = Field(default=0, ge=0, description="First sequence number of this run")
    epoch: int = Field(
        default=0,
        ge=0,
        le=MAX_INT_HEADER,
        description="This run's epoch, with seq each frame's identity; 0 = the run's start time in microseconds",
    )
    live_buffer: int = Field(
        default=8, ge=1, le=10_000, description="Frames a live source may hold before dropping the oldest"
    )
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    progress: bool | None = Field(
        default=None, description="Progress bar for file sources (default: when on a terminal)"
    )
    summary_file: str | None = Field(default=None, description="Write a JSON summary here on exit")
    health_port: int = Field(default=0, ge=0, le=65535, description="0 disables /healthz and /metrics")
    flush_timeout_s: float = Field(default=30.0, gt=0)
    log_level: str = "info"
    log_format: LogFormat = Field(default="text", description="text, or json: one object per line with the trace id")
    trace_sample_ratio: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="The share of frames whose trace is recorded, when tracing is on (vidpipe.tracing)",
    )

    # --- registry mode ---------------------------------------------------------------------------
    group_id: str = Field(
        default="vidpipe-publishers", min_length=1, description="The Kafka consumer group the publishers share"
    )
    session_timeout_ms: int = Field(
        default=10_000,
        ge=1_000,
        le=300_000,
        description="A pod silent this long is dropped from the group and its streams move to the others",
    )
    sources_dir: str = Field(
        default="/var/run/vidpipe/sources",
        description="Where the camera Secret is mounted: secret:<key> is a file here",
    )
    status_interval_s: float = Field(default=5.0, gt=0, le=300, description="How often each stream's status is written")
    pod_name: str | None = Field(default=None, description="Named in each stream's status; default: the host name")

    @field_validator("resize")
    @classmethod
    def _check_resize(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(r"[1-9]\d{0,4}(x[1-9]\d{0,4})?", value):
            raise ValueError(f"{value!r} is not WIDTHxHEIGHT or WIDTH (e.g. 1280x720)")
        return value

    @field_validator("stream_id")
    @classmethod
    def _check_stream_id(cls, value: str | None) -> str | None:
        # The contract's one rule (the consumer dead-letters what breaks it); --stream-id sets it too.
        return None if value is None else check_stream_id(value)

    @field_validator("source_secret_arn")
    @classmethod
    def _check_secret_arn(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not SECRET_ARN.match(value):
            raise ValueError(
                "not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>)"
            )
        return value

    def resize_to(self) -> tuple[int, int | None] | None:
        if not self.resize:
            return None
        width, _, height = self.resize.partition("x")
        return int(width), int(height) if height else None
