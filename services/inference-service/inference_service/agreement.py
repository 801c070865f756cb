"""Detection agreement between two runs of a detector (pure): matched by class at an IoU, greedy by score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Agreement:
    reference: int = 0  # detections of the reference run
    tested: int = 0  # detections of the tested run
    matched: int = 0  # pairs of the same class overlapping at >= the IoU
    score_diffs: list[float] = field(default_factory=list)  # |score difference| of each matched pair

    def add_frame(self, reference: list[dict[str, Any]], tested: list[dict[str, Any]], min_iou: float = 0.5) -> None:
        """One frame's detections ({class_id, score, box}): each reference detection, highest score first,
        takes the unmatched tested detection of its class that overlaps it most (at least min_iou)."""
        self.reference += len(reference)
        self.tested += len(tested)
        taken = [False] * len(tested)
        for ref in sorted(reference, key=lambda d: -float(d["score"])):
            best, best_iou = -1, min_iou
            for index, candidate in enumerate(tested):
                if taken[index] or candidate["class_id"] != ref["class_id"]:
                    continue
                overlap = iou(ref["box"], candidate["box"])
                if overlap >= best_iou:
                    best, best_iou = index, overlap
            if best >= 0:
                taken[best] = True
                self.matched += 1
                self.score_diffs.append(abs(float(ref["score"]) - float(tested[best]["score"])))

    @property
    def f1(self) -> float:
        total = self.reference + self.tested
        return 1.0 if total == 0 else 2 * self.matched / total

    def summary(self) -> dict[str, Any]:
        diffs = self.score_diffs
        return {
            "reference_detections": self.reference,
            "tested_detections": self.tested,
            "kept": self.matched,
            "lost": self.reference - self.matched,
            "added": self.tested - self.matched,
            "f1": round(self.f1, 4),
            "score_diff_mean": round(sum(diffs) / len(diffs), 4) if diffs else 0.0,
            "score_diff_max": round(max(diffs), 4) if diffs else 0.0,
        }
