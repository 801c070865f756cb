from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from vidpipe.contract import MAX_FRAME_BYTES
from vidpipe.http_edge import EdgeSettings
from vidpipe.image_header import MAX_PIXELS
from vidpipe.logs import LogFormat


class DecoderMode(StrEnum):
    AUTO = "auto"  # from the model's `decoder` metadata, else raw
    YOLO = "yolo"  # boxes [N,A,4] normalized x1y1x2y2 + scores [N,A,C] -> NMS'd detections
    RAW = "raw"  # any ONNX model: the output tensors as JSON


class BackendChoice(StrEnum):
    AUTO = "auto"  # OpenVINO on x86-64 where it loads (and can feed) the model, onnxruntime otherwise
    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"


class PrecisionChoice(StrEnum):
    AUTO = "auto"  # bf16 where the CPU has AMX-BF16/AVX512-BF16 and the model passed the accuracy gate
    F32 = "f32"
    BF16 = "bf16"  # OpenVINO only; computes in f32 on a CPU without native bf16
    # OpenVINO only: the model's int8 version beside it (python -m tools.quantize), refused at start-up
    # unless its accuracy gate passed for these model bytes. Never chosen by auto.
    INT8 = "int8"


class InferenceSettings(EdgeSettings):
    """INFERENCE_* variables (see env.example); the HTTP edge's (token, hosts, limits) from EdgeSettings."""

    model_config = SettingsConfigDict(
        env_prefix="INFERENCE_", env_ignore_empty=True, extra="ignore", protected_namespaces=()
    )

    model_uri: str = Field(description="Local path, file:// or s3:// URI of the .onnx model")
    model_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="The model file's sha256 (64 hex digits): a fetched file with any other digest is not loaded",
    )
    labels_uri: str | None = Field(default=None, description="Optional labels file, one per line")
    model_cache_dir: str = "/tmp/vidpipe-models"
    decoder: DecoderMode = DecoderMode.AUTO
    input_size: int = Field(default=640, ge=32, le=4096, description="Used when the model's H/W are dynamic")
    input_scale: float = Field(default=1 / 255, gt=0, description="Multiplier for float inputs")
    jpeg_reduced_decode: bool = Field(
        default=False,
        description="Decode a JPEG over twice the model's input size at 1/2, 1/4 or 1/8 (about 2.8x faster at 1080p; "
        "moves detections slightly)",
    )
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    iou_threshold: float = Field(default=0.45, ge=0.0, le=1.0)
    max_detections: int = Field(default=100, ge=1, le=10_000)
    max_batch_size: int = Field(default=4, ge=1, le=256)
    max_queue_delay_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    max_queue: int = Field(
        default=0,
        ge=0,
        description="Frames accepted and not yet answered (decoding, queued or running) before requests get 503; "
        "0: sized from the model instances (queue_for)",
    )
    max_request_items: int = Field(default=64, ge=1, le=1024)
    max_image_bytes: int = Field(default=MAX_FRAME_BYTES, ge=1024)
    # Memory bounds: what one frame may cost, and what all requests together may hold at once.
    max_pixels: int = Field(
        default=MAX_PIXELS,
        ge=1,
        description="Largest image (width x height from its header) "
        "decoded; larger frames are refused with too_large before decoding",
    )
    max_inflight_decode_pixels: int = Field(
        default=2 * MAX_PIXELS,
        ge=1,
        description="Pixels being decoded at once across all "
        "requests; more waits (about 10 bytes of memory per pixel while decoding)",
    )
    max_inflight_body_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Request body bytes held at once across all requests; more waits",
    )
    busy_wait_ms: float = Field(
        default=2000.0,
        ge=0.0,
        le=60_000.0,
        description="How long a request waits for body or decode memory before 503 + Retry-After",
    )
    backend: BackendChoice = BackendChoice.AUTO
    precision: PrecisionChoice = PrecisionChoice.AUTO
    instances: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Model instances each serving process runs at once; 0 = from the process's share of the pod's "
        "CPU limit (OpenVINO one per CPU, onnxruntime one per two)",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="Threads per model instance; 0 = the process's share of the CPUs / instances"
    )
    gate_at_startup: bool = Field(
        default=True,
        description="Under INFERENCE_PRECISION=auto on a CPU with native bf16, measure bf16 against f32 on the "
        "calibration clip before serving when no verdict for this model and CPU exists yet (readiness waits)",
    )
    gate_clip: str = Field(
        default="/opt/vidpipe/data/calibration.mp4",
        description="The calibration video the start-up gate runs on (the image ships one)",
    )
    gate_frames: int = Field(default=250, ge=1, le=100_000, description="Frames of the clip the start-up gate uses")
    gate_cache_uri: str | None = Field(
        default=None,
        description="Where start-up verdicts are kept per (model sha256, CPU model, runtime version): a local "
        "directory or an s3:// prefix; default <INFERENCE_MODEL_CACHE_DIR>/gates",
    )
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535, description="The API: /v1/*")
    ops_port: int = Field(default=8090, ge=1, le=65535, description="/healthz, /readyz and /metrics only")
    log_level: str = "info"
    log_format: LogFormat = Field(default="text", description="text, or json: one object per line with the trace id")
    processes: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Processes serving the API on its port, each with its own model and its share of the CPUs "
        "(instances and threads are then per process); 0 = one per CPU of the pod's limit (serving.auto_processes)",
    )

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Self:
        if self.ops_port == self.port:
            raise ValueError("INFERENCE_OPS_PORT must differ from INFERENCE_PORT")
        if self.max_queue == 0:
            pass  # sized once the instances are known (queue_for), never below a full request
        elif self.max_queue < self.max_batch_size:
            raise ValueError("INFERENCE_MAX_QUEUE must be at least INFERENCE_MAX_BATCH_SIZE")
        if 0 < self.max_queue < self.max_request_items:
            raise ValueError(
                "INFERENCE_MAX_QUEUE must be at least INFERENCE_MAX_REQUEST_ITEMS (a full batch request "
                "must fit, or it would get 503 forever)"
            )
        if self.max_inflight_decode_pixels < self.max_pixels:
            raise ValueError(
                "INFERENCE_MAX_INFLIGHT_DECODE_PIXELS must be at least INFERENCE_MAX_PIXELS (one largest frame)"
            )
        if self.max_inflight_body_bytes < self.batch_body_limit:
            raise ValueError(
                f"INFERENCE_MAX_INFLIGHT_BODY_BYTES must be at least INFERENCE_MAX_REQUEST_ITEMS x "
                f"(INFERENCE_MAX_IMAGE_BYTES + 4) = {self.batch_body_limit} (one largest batch request)"
            )
        return self

    @property
    def batch_body_limit(self) -> int:
        """The largest batch body: max items, each a 4-byte length and an image."""
        return self.max_request_items * (self.max_image_bytes + 4)


def queue_for(settings: InferenceSettings, instances: int, batch_capacity: int) -> int:
    """Frames in flight the service accepts: INFERENCE_MAX_QUEUE, or with 0, enough to keep every
    instance's batch full four times over (decoding, queued, running, answering), and at least 64 and a
    full request. Measured on 16 vCPUs: a fixed 64 capped 16 instances at 0.73 of the bare limit."""
    if settings.max_queue:
        return settings.max_queue
    return max(64, settings.max_request_items, 4 * instances * batch_capacity)
