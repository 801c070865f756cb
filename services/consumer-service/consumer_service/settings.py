from __future__ import annotations

from typing import Literal, Self

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidpipe.contract import CONSUMER_GROUP, MAX_FRAME_BYTES
from vidpipe.image_header import MAX_PIXELS
from vidpipe.logs import LogFormat
from vidpipe.secrets import check_secret_arn


class ConsumerSettings(BaseSettings):
    """CONSUMER_* variables (see env.example)."""

    model_config = SettingsConfigDict(env_prefix="CONSUMER_", env_ignore_empty=True, extra="ignore")

    inference_url: AnyHttpUrl = Field(description="Base URL of the inference service")
    # The inference API token, sent as `Authorization: Bearer`: at most one of the three (read at start-up
    # with vidpipe.secrets.resolve_secret); none = no token sent.
    inference_token: SecretStr | None = None
    inference_token_file: str | None = Field(default=None, description="A mounted file holding the token")
    inference_token_secret_arn: str | None = Field(
        default=None, description='Secrets Manager secret ARN whose string (or JSON key "token") is the token'
    )
    archive_uri: str = Field(description="Local folder or s3://bucket/prefix for frames and results")
    group_id: str = CONSUMER_GROUP
    batch_max_frames: int = Field(default=16, ge=1, le=1024)
    batch_max_wait_ms: int = Field(default=50, ge=1, le=60_000)
    inference_timeout_s: float = Field(default=30.0, gt=0)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    max_frame_bytes: int = Field(default=MAX_FRAME_BYTES, ge=1024, le=MAX_FRAME_BYTES)
    max_frame_age_ms: int = Field(default=0, ge=0, description="Skip frames older than this (0 = never)")
    max_pixels: int = Field(
        default=MAX_PIXELS, ge=1, description="Dead-letter frames declaring more pixels (too_large)"
    )
    inference_attempts: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Tries of a batch that fails (5xx, timeout) before splitting it to find the frame at fault",
    )
    unhealthy_after_s: float = Field(
        default=300.0,
        gt=0,
        description="An outage of inference, storage or the output topics this long makes /healthz answer 503",
    )
    dead_letter_payload: Literal["full", "headers"] = Field(
        default="full",
        description="full: dead letters carry the original value; headers: only its headers and its length",
    )
    max_inflight_batches: int = Field(default=3, ge=1, le=64, description="Batches in inference or archive at once")
    pause_after_s: float = Field(
        default=5.0, ge=0, description="Pause partitions once the pipeline has been full this long"
    )
    prefetch_max_kbytes: int = Field(default=65536, ge=1024, description="librdkafka's pre-fetch queue bound")
    revoke_timeout_s: float = Field(default=10.0, ge=0, description="Wait for in-flight batches of revoked partitions")
    shutdown_timeout_s: float = Field(default=30.0, ge=0, description="Wait for in-flight batches on SIGTERM")
    archive_frames: bool = True
    archive_workers: int = Field(default=8, ge=1, le=128)
    health_port: int = Field(default=8081, ge=0, le=65535, description="0 disables /healthz and /metrics")
    log_level: str = "info"
    log_format: LogFormat = Field(default="text", description="text, or json: one object per line with the trace id")

    @field_validator("inference_token_secret_arn")
    @classmethod
    def _check_token_arn(cls, value: str | None) -> str | None:
        return check_secret_arn(value, "CONSUMER_INFERENCE_TOKEN_SECRET_ARN")

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("CONSUMER_RETRY_MAX_S must be >= CONSUMER_RETRY_INITIAL_S")
        return self
