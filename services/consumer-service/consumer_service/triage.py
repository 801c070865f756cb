"""Decide what happens to each record before inference (pure: no broker, no HTTP)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from vidpipe.contract import ContractError, FrameMeta, parse_frame_headers
from vidpipe.jpeg import NotAJpeg, jpeg_size


@dataclass(frozen=True, slots=True)
class Accepted:
    meta: FrameMeta
    value: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    stage: str  # "validate" here, "inference" when the service refuses the image


@dataclass(frozen=True, slots=True)
class Stale:
    meta: FrameMeta
    age_ms: float


def triage(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
    max_frame_bytes: int,
    max_frame_age_ms: int = 0,
    now_us: int = 0,
) -> Accepted | Rejected | Stale:
    if not value:
        return Rejected("record value is empty (expected JPEG bytes)", "validate")
    if len(value) > max_frame_bytes:
        return Rejected(f"record value is {len(value)} bytes, over the {max_frame_bytes}-byte frame limit", "validate")
    try:
        meta = parse_frame_headers(headers)
    except ContractError as exc:
        return Rejected(str(exc), "validate")
    try:
        width, height = jpeg_size(value)
    except NotAJpeg as exc:
        return Rejected(str(exc), "validate")
    if (width, height) != (meta.width, meta.height):
        return Rejected(f"headers say {meta.width}x{meta.height} but the JPEG is {width}x{height}", "validate")
    if max_frame_age_ms and now_us:
        age_ms = (now_us - meta.capture_ts_us) / 1000.0
        if age_ms > max_frame_age_ms:
            return Stale(meta, age_ms)
    return Accepted(meta, value)


def result_document(meta: FrameMeta, inferred: dict, model_name: str, model_version: str, processed_ts_us: int) -> dict:
    """The results-topic document for one frame (fields of vidpipe.contract.FrameResult)."""
    return {
        "schema_version": meta.schema_version,
        "stream_id": meta.stream_id,
        "seq": meta.seq,
        "capture_ts_us": meta.capture_ts_us,
        "processed_ts_us": processed_ts_us,
        "width": meta.width,
        "height": meta.height,
        "model_name": model_name,
        "model_version": model_version,
        "inference_ms": float(inferred.get("inference_ms", 0.0)),
        "detections": inferred.get("detections", []),
        "traceparent": meta.traceparent,
    }
