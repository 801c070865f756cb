from __future__ import annotations

from enum import Enum

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidpipe.contract import MAX_FRAME_BYTES


class DecoderMode(str, Enum):
    AUTO = "auto"  # from the model's `decoder` metadata, else raw
    YOLO = "yolo"  # boxes [N,A,4] normalized x1y1x2y2 + scores [N,A,C] -> NMS'd detections
    RAW = "raw"  # any ONNX model: the output tensors as JSON


class InferenceSettings(BaseSettings):
    """INFERENCE_* variables (see env.example)."""

    model_config = SettingsConfigDict(env_prefix="INFERENCE_", env_ignore_empty=True, extra="ignore", protected_namespaces=())

    model_uri: str = Field(description="Local path, file:// or s3:// URI of the .onnx model")
    labels_uri: str | None = Field(default=None, description="Optional labels file, one per line")
    model_cache_dir: str = "/tmp/vidpipe-models"
    decoder: DecoderMode = DecoderMode.AUTO
    input_size: int = Field(default=640, ge=32, le=4096, description="Used when the model's H/W are dynamic")
    input_scale: float = Field(default=1 / 255, gt=0, description="Multiplier for float inputs")
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    iou_threshold: float = Field(default=0.45, ge=0.0, le=1.0)
    max_detections: int = Field(default=100, ge=1, le=10_000)
    max_batch_size: int = Field(default=4, ge=1, le=256)
    max_queue_delay_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    max_queue: int = Field(default=64, ge=1, description="Frames waiting for the model before 503")
    max_request_items: int = Field(default=64, ge=1, le=1024)
    max_image_bytes: int = Field(default=MAX_FRAME_BYTES, ge=1024)
    intra_op_threads: int = Field(default=0, ge=0, description="0 = onnxruntime's choice (all cores)")
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "info"

    @model_validator(mode="after")
    def _queue_holds_a_request(self):
        if self.max_queue < self.max_batch_size:
            raise ValueError("INFERENCE_MAX_QUEUE must be at least INFERENCE_MAX_BATCH_SIZE")
        return self
