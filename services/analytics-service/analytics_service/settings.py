"""ANALYTICS_* settings, read once at start-up (see env.example)."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from vidpipe.analytics_config import AnalyticsConfig, AnalyticsConfigError, load_streams_file
from vidpipe.config import ConfigurationError
from vidpipe.contract import ANALYTICS_GROUP
from vidpipe.http_edge import EdgeSettings
from vidpipe.logs import LogFormat
from vidpipe.storage import parse_s3_uri

from .engine import TrackerSettings


class AnalyticsSettings(EdgeSettings):
    """ANALYTICS_* variables (see env.example); the HTTP edge's (token, hosts, limits) from EdgeSettings."""

    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", env_ignore_empty=True, extra="ignore")

    streams_file: Path | None = Field(
        default=None,
        description="Streams configuration (YAML or JSON) whose `analytics` section names lines and zones; "
        "applies while the stream registry holds no stream",
    )
    registry: bool = Field(
        default=True,
        description="Follow the stream registry (TOPICS_STREAMS) for lines and zones and serve its control API",
    )
    registry_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        le=300.0,
        description="At start-up, how long analysis waits for the registry to be read; for a write through the "
        "control API, how long the answer waits to read it back",
    )
    archive_uri: str | None = Field(
        default=None, description="The consumer's archive (folder or s3://): where the live view reads frames"
    )
    group_id: str = Field(default=ANALYTICS_GROUP, min_length=1, max_length=255)
    host: str = "0.0.0.0"
    port: int = Field(default=8082, ge=1, le=65535, description="The live view: its page and /api/*")
    ops_port: int = Field(default=8092, ge=1, le=65535, description="/healthz, /readyz and /metrics only")
    max_streams: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Without a streams list in ANALYTICS_STREAMS_FILE: streams analyzed at most; results of "
        "further streams are counted and skipped",
    )
    # The tracker (ByteTrack, through the engine): see engine.TrackerSettings.
    track_activation_threshold: float = Field(default=0.25, ge=0.0, le=1.0)
    lost_track_buffer: int = Field(default=30, ge=1, le=10_000)
    minimum_matching_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    frame_rate: int = Field(default=25, ge=1, le=1000)
    minimum_consecutive_frames: int = Field(default=1, ge=1, le=1000)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    reset_gap_s: float = Field(default=10.0, gt=0.0)
    batch_max_results: int = Field(default=500, ge=1, le=100_000, description="Results taken per poll")
    batch_max_wait_ms: int = Field(default=100, ge=1, le=60_000)
    retry_initial_s: float = Field(default=0.5, gt=0.0)
    retry_max_s: float = Field(default=10.0, gt=0.0)
    shutdown_timeout_s: float = Field(default=10.0, ge=0.0, description="Wait for undelivered events on SIGTERM")
    live_window: int = Field(default=50, ge=2, le=10_000, description="Frames per stream the live fps is taken over")
    log_level: str = "info"
    log_format: LogFormat = Field(default="text", description="text, or json: one object per line with the trace id")

    @field_validator("archive_uri")
    @classmethod
    def _storage_uri(cls, value: str | None) -> str | None:
        # The scheme is checked here (named at start-up); the store itself is opened by the service.
        if value is not None:
            if value.startswith("s3://"):
                parse_s3_uri(value)
            elif "://" in value and not value.startswith("file://"):
                raise ValueError("only s3://bucket/prefix, file:// and local paths are supported")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> AnalyticsSettings:
        if self.ops_port == self.port:
            raise ValueError("ANALYTICS_OPS_PORT must differ from ANALYTICS_PORT")
        return self

    def tracker(self) -> TrackerSettings:
        return TrackerSettings(
            track_activation_threshold=self.track_activation_threshold,
            lost_track_buffer=self.lost_track_buffer,
            minimum_matching_threshold=self.minimum_matching_threshold,
            frame_rate=self.frame_rate,
            minimum_consecutive_frames=self.minimum_consecutive_frames,
            min_score=self.min_score,
            reset_gap_s=self.reset_gap_s,
        )


def load_analytics_config(settings: AnalyticsSettings) -> AnalyticsConfig:
    """The lines and zones of ANALYTICS_STREAMS_FILE (none without one), or exit(2) naming every bad key,
    as vidpipe.config does for variables."""
    if settings.streams_file is None:
        return AnalyticsConfig()
    try:
        return load_streams_file(settings.streams_file)
    except AnalyticsConfigError as exc:
        print(f"invalid configuration:\n  ANALYTICS_STREAMS_FILE ({settings.streams_file}): {exc}", file=sys.stderr)
        raise ConfigurationError(2) from None


def load_stream_names(settings: AnalyticsSettings) -> frozenset[str] | None:
    """The stream ids ANALYTICS_STREAMS_FILE lists (its `streams` list, read as load_streams_file reads
    it, after that validated the file): only these are analyzed. None without a file, or with an empty
    list: then ANALYTICS_MAX_STREAMS bounds the streams instead."""
    if settings.streams_file is None:
        return None
    import yaml

    document = yaml.safe_load(settings.streams_file.read_text()) or {}
    names = set()
    for stream in document.get("streams") or []:
        name = (stream.get("name") or stream.get("id")) if isinstance(stream, dict) else stream
        if isinstance(name, str):
            names.add(name)
    return frozenset(names) or None
