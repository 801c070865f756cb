"""Turn model outputs into API results (pure numpy)."""
from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from vidpipe.contract import MAX_RAW_OUTPUT_VALUES


class Decoder(Protocol):
    kind: str

    def decode(self, outputs: dict[str, np.ndarray], index: int, width: int, height: int) -> dict: ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        xx1 = np.maximum(x1[best], x1[rest])
        yy1 = np.maximum(y1[best], y1[rest])
        xx2 = np.minimum(x2[best], x2[rest])
        yy2 = np.minimum(y2[best], y2[rest])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


class YoloDecoder:
    """Outputs `boxes` [N,A,4] (x1,y1,x2,y2 in 0..1) and `scores` [N,A,C]; class-wise NMS."""

    kind = "yolo"

    def __init__(self, labels: list[str], score_threshold: float, iou_threshold: float, max_detections: int):
        self.labels = labels
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def decode(self, outputs: dict[str, np.ndarray], index: int, width: int, height: int) -> dict:
        boxes = outputs["boxes"][index]
        scores = outputs["scores"][index]
        class_ids = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), class_ids]
        candidates = np.nonzero(best >= self.score_threshold)[0]
        detections: list[dict] = []
        if candidates.size:
            scale = np.array([width, height, width, height], dtype=np.float32)
            cand_boxes = np.clip(boxes[candidates], 0.0, 1.0) * scale
            cand_scores = best[candidates]
            cand_classes = class_ids[candidates]
            for class_id in np.unique(cand_classes):
                members = np.nonzero(cand_classes == class_id)[0]
                for kept in nms(cand_boxes[members], cand_scores[members], self.iou_threshold):
                    i = members[kept]
                    detections.append(
                        {
                            "class_id": int(class_id),
                            "label": self._label(int(class_id)),
                            "score": round(float(cand_scores[i]), 4),
                            "box": [round(float(v), 1) for v in cand_boxes[i]],
                        }
                    )
            detections.sort(key=lambda d: -d["score"])
            del detections[self.max_detections :]
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

    def decode(self, outputs: dict[str, np.ndarray], index: int, width: int, height: int) -> dict:
        tensors = {}
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


def summarize(item: np.ndarray, include_data: bool) -> dict:
    """One tensor as a RawOutput dict (see RawDecoder)."""
    out: dict = {"shape": [int(n) for n in item.shape], "dtype": str(item.dtype)}
    numeric = item.dtype.kind in "biuf"
    if include_data:
        if item.dtype.kind == "f" and not np.isfinite(item).all():
            out["data"] = np.where(np.isfinite(item), item, None).tolist()
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


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None  # a mean can overflow to inf
