"""Turn model outputs into API results (numpy, and OpenCV's non-maximum suppression)."""

from __future__ import annotations

import math
from typing import Any, Protocol, SupportsFloat

import cv2
import numpy as np

from vidpipe.contract import MAX_RAW_OUTPUT_VALUES


class Decoder(Protocol):
    kind: str

    def decode(self, outputs: dict[str, np.ndarray], index: int, width: int, height: int) -> dict[str, Any]: ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, class_ids: np.ndarray | None = None) -> list[int]:
    """Greedy non-maximum suppression (OpenCV's), class-wise when class_ids are given; boxes are
    x1,y1,x2,y2. Returns the kept indices, best first."""
    if not len(boxes):
        return []
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
    scores = scores.astype(np.float32)
    # score threshold 0: callers have already dropped what is under theirs. OpenCV's stubs type the
    # boxes, scores and class ids as Python sequences; the binding takes numpy arrays (no list copies).
    if class_ids is None:
        kept = cv2.dnn.NMSBoxes(xywh, scores, 0.0, iou_threshold)  # type: ignore[arg-type]
    else:
        kept = cv2.dnn.NMSBoxesBatched(xywh, scores, class_ids.astype(np.int32), 0.0, iou_threshold)  # type: ignore[arg-type]
    order = sorted((int(i) for i in np.asarray(kept).reshape(-1)), key=lambda i: -float(scores[i]))
    return order


class YoloDecoder:
    """Outputs `boxes` [N,A,4] (x1,y1,x2,y2 in 0..1) and `scores` [N,A,C]; class-wise NMS."""

    kind = "yolo"

    def __init__(self, labels: list[str], score_threshold: float, iou_threshold: float, max_detections: int):
        self.labels = labels
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def decode(self, outputs: dict[str, np.ndarray], index: int, width: int, height: int) -> dict[str, Any]:
        boxes = outputs["boxes"][index]
        scores = outputs["scores"][index]
        class_ids = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), class_ids]
        candidates = np.nonzero(best >= self.score_threshold)[0]
        detections: list[dict[str, Any]] = []
        if candidates.size:
            scale = np.array([width, height, width, height], dtype=np.float32)
            cand_boxes = np.clip(boxes[candidates], 0.0, 1.0) * scale
            cand_scores = best[candidates]
            cand_classes = class_ids[candidates]
            for i in nms(cand_boxes, cand_scores, self.iou_threshold, cand_classes)[: self.max_detections]:
                class_id = int(cand_classes[i])
                detections.append(
                    {
                        "class_id": class_id,
                        "label": self._label(class_id),
                        "score": round(float(cand_scores[i]), 4),
                        "box": [round(float(v), 1) for v in cand_boxes[i]],
                    }
                )
        return {"detections": detections}

    def _label(self, class_id: int) -> str:
        return self.labels[class_id] if class_id < len(self.labels) else str(class_id)


class RawDecoder:
    """Any model: per output tensor, this image's slice as a vidpipe.contract.RawOutput: shape and dtype
    always, min/max/mean for numeric tensors, and the values (nested lists) only for small tensors, so a
    heatmap model answers in bytes, not megabytes, per frame. JSON has no NaN or infinity: such values
    are null in `data`, and min/max/mean are over the finite values (null when there are none)."""

    kind = "raw"

    def __init__(self, max_values: int = MAX_RAW_OUTPUT_VALUES, max_frame_values: int = 4 * MAX_RAW_OUTPUT_VALUES):
        self.max_values = max_values  # per tensor
        self.max_frame_values = max_frame_values  # all tensors of one frame, so the result stays under MAX_RESULT_BYTES

    def decode(self, outputs: dict[str, np.ndarray], index: int, width: int, height: int) -> dict[str, Any]:
        tensors: dict[str, dict[str, Any]] = {}
        budget = self.max_frame_values
        for name, value in outputs.items():
            if not isinstance(value, np.ndarray):  # sequence or map outputs (e.g. ZipMap): described, not sent
                tensors[name] = {"shape": [], "dtype": type(value).__name__}
                continue
            item = value[index] if value.ndim > 0 and value.shape[0] > index else value
            tensors[name] = summarize(item, include_data=item.size <= min(self.max_values, budget))
            if "data" in tensors[name]:
                budget -= item.size
        return {"outputs": tensors}


def summarize(item: np.ndarray, include_data: bool) -> dict[str, Any]:
    """One tensor as a RawOutput dict (see RawDecoder)."""
    out: dict[str, Any] = {"shape": [int(n) for n in item.shape], "dtype": str(item.dtype)}
    numeric = item.dtype.kind in "biuf"
    if include_data:
        if item.dtype.kind == "f" and not np.isfinite(item).all():
            # None as a 0-d object array (what NumPy makes of it anyway): non-finite values become null
            out["data"] = np.where(np.isfinite(item), item, np.asarray(None)).tolist()
        elif numeric:
            out["data"] = item.tolist()
        elif item.dtype.kind in "OUS" and sum(len(str(v)) for v in item.flat) <= 16 * 1024:
            out["data"] = item.astype(str).tolist()  # strings, bounded in total length
    if numeric and item.size:
        values = item.astype(np.float64, copy=False).ravel()
        if item.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size:
            with np.errstate(over="ignore", invalid="ignore"):
                out.update(min=_finite(values.min()), max=_finite(values.max()), mean=_finite(values.mean()))
        else:
            out.update(min=None, max=None, mean=None)
    return out


def _finite(value: SupportsFloat) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None  # a mean can overflow to inf
