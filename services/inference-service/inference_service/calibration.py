"""The accuracy gate's measurement: a reduced precision against f32 over the frames of a video, as detection
agreement (F1 at an IoU, matched by class). One code path for `python -m tools.accuracy` (a verdict written
beside the model) and the service's start-up gate (a verdict cached per model and CPU, startup_gate.py)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2

from vidpipe.storage import sha256_file

from .accuracy_gate import min_f1
from .agreement import Agreement
from .cpu import bf16_flags, cpu_model
from .model import LoadedModel, load_model
from .preprocess import InputBuffer, PreparedImage, decode_and_resize
from .settings import BackendChoice, DecoderMode, InferenceSettings, PrecisionChoice

BATCH = 8
SCORE_THRESHOLD = 0.3
NMS_IOU = 0.45
MATCH_IOU = 0.5


class CalibrationError(RuntimeError):
    """The clip cannot be read, or holds no frame."""


def frames(video: Path, limit: int | None) -> Iterator[bytes]:
    """The video's frames as PNG (lossless), so they enter the service's own decode-and-resize."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise CalibrationError(f"{video}: not a readable video")
    count = 0
    try:
        while limit is None or count < limit:
            ok, frame = capture.read()
            if not ok:
                break
            yield cv2.imencode(".png", frame)[1].tobytes()
            count += 1
    finally:
        capture.release()


def detect(model: LoadedModel, images: list[PreparedImage], buffer: InputBuffer) -> list[list[dict[str, Any]]]:
    outputs = model.run(buffer.fill(images))
    return [
        model.decoder.decode(outputs, index, image.width, image.height)["detections"]
        for index, image in enumerate(images)
    ]


def gate_settings(
    base: InferenceSettings,
    backend: str,
    precision: str,
    threads: int = 0,
    score_threshold: float = SCORE_THRESHOLD,
    nms_iou: float = NMS_IOU,
) -> InferenceSettings:
    """The settings a gate loads a model with: one instance, the YOLO decoder, every detection kept, and never
    a gate of its own (an explicit precision)."""
    return base.model_copy(
        update={
            "backend": BackendChoice(backend),
            "precision": PrecisionChoice(precision),
            "instances": 1,
            "intra_op_threads": threads,
            "decoder": DecoderMode.YOLO,
            "score_threshold": score_threshold,
            "iou_threshold": nms_iou,
            "max_detections": 10_000,
        }
    )


def measure(
    reference: LoadedModel,
    tested: LoadedModel,
    video: Path,
    limit: int | None = None,
    match_iou: float = MATCH_IOU,
) -> tuple[dict[str, Any], int]:
    """(agreement summary, frames) of `tested` against `reference` over the video's first `limit` frames."""
    agreement = Agreement()
    ref_buffer, test_buffer = InputBuffer(reference.input, BATCH), InputBuffer(tested.input, BATCH)
    pending: list[PreparedImage] = []
    count = 0

    def flush() -> None:
        for ref, got in zip(detect(reference, pending, ref_buffer), detect(tested, pending, test_buffer), strict=True):
            agreement.add_frame(ref, got, match_iou)
        pending.clear()

    for data in frames(video, limit):
        pending.append(decode_and_resize(data, reference.input))
        count += 1
        if len(pending) == BATCH:
            flush()
    if pending:
        flush()
    if count == 0:
        raise CalibrationError(f"{video}: no frames")
    return agreement.summary(), count


def gate_report(
    settings: InferenceSettings,
    model_path: Path,
    precision: str,
    video: Path,
    limit: int | None = None,
    backend: str = "openvino",
    reference_backend: str = "openvino",
    threads: int = 0,
    score_threshold: float = SCORE_THRESHOLD,
    nms_iou: float = NMS_IOU,
    match_iou: float = MATCH_IOU,
) -> dict[str, Any]:
    """The gate's report for the model at `settings.model_uri` (local as `model_path`): what it measured,
    on which CPU and runtime, and whether it passed (`precision` is what the runtime actually computed in)."""
    reference = load_model(gate_settings(settings, reference_backend, "f32", threads, score_threshold, nms_iou))
    tested = load_model(
        gate_settings(settings, backend, precision, threads, score_threshold, nms_iou), require_gate=False
    )
    summary, count = measure(reference, tested, video, limit, match_iou)
    return {
        "model": model_path.name,
        "model_sha256": sha256_file(model_path),
        "precision": tested.runtime["precision"],
        "asked_precision": precision,
        "backend": f"{tested.runtime['backend']} {tested.runtime['backend_version']}",
        "reference": f"f32 on {reference.runtime['backend']} {reference.runtime['backend_version']}",
        "cpu": cpu_model(),
        "cpu_bf16_flags": bf16_flags(),
        "video": video.name,
        "frames": count,
        "score_threshold": score_threshold,
        "nms_iou": nms_iou,
        "match_iou": match_iou,
        **summary,
        "min_f1": min_f1(precision),
        "passed": summary["f1"] >= min_f1(precision) and tested.runtime["precision"] == precision,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
