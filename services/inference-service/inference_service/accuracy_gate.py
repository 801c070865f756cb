"""The accuracy gate's verdict for a model: may `INFERENCE_PRECISION=auto` serve it in bf16?

`python -m tools.accuracy --write` runs bf16 against f32 over the sample video and writes
`<model>.accuracy.json` beside the model file (for `s3://bucket/m.onnx`: `s3://bucket/m.onnx.accuracy.json`).
The service fetches that file from the same place it loads the model. bf16 is allowed only when the file
names this model's sha256, the reduced precision it measured is bf16, and its F1 is at least MIN_F1; a
missing, unreadable or stale file (another digest) means f32.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from vidpipe.storage import fetch_to_local

log = logging.getLogger(__name__)

SUFFIX = ".accuracy.json"
MIN_F1 = 0.97  # detection F1 (IoU 0.5, matched by class) of bf16 against f32 over the sample video


def gate_uri(model_uri: str) -> str:
    return model_uri + SUFFIX


@dataclass(frozen=True)
class GateVerdict:
    allows_bf16: bool
    reason: str  # why (shown in /v1/model and the start-up log)
    report: dict[str, Any] | None = None  # the file's content, when it names this model

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"bf16_allowed": self.allows_bf16, "reason": self.reason}
        if self.report is not None:
            for key in ("precision", "f1", "score_diff_mean", "score_diff_max", "frames", "video", "created"):
                if key in self.report:
                    described[key] = self.report[key]
        return described


def judge(report: Any, model_sha256: str) -> GateVerdict:
    """The verdict of a parsed gate file for the model with this digest."""
    if not isinstance(report, dict):
        return GateVerdict(False, "gate file is not a JSON object")
    if report.get("model_sha256") != model_sha256:
        return GateVerdict(False, "gate file is for another model (sha256 differs): run the gate again")
    if report.get("precision") != "bf16":
        return GateVerdict(False, f"gate file measured precision {report.get('precision')!r}, not bf16", report)
    f1 = report.get("f1")
    if not isinstance(f1, int | float) or isinstance(f1, bool):
        return GateVerdict(False, "gate file has no numeric f1", report)
    if f1 < MIN_F1:
        return GateVerdict(False, f"bf16 failed the gate: F1 {f1:.4f} < {MIN_F1}", report)
    return GateVerdict(True, f"bf16 passed the gate: F1 {f1:.4f} >= {MIN_F1}", report)


def read_verdict(model_uri: str, model_sha256: str, cache_dir: str) -> GateVerdict:
    """Fetch `<model_uri>.accuracy.json` (local path or s3://) and judge it; absent -> f32."""
    uri = gate_uri(model_uri)
    try:
        path = fetch_to_local(uri, cache_dir)
    except FileNotFoundError:
        return GateVerdict(False, f"no gate file {uri}")
    except Exception as exc:  # S3: a missing object is a ClientError (404); anything else is also "no verdict"
        return GateVerdict(False, f"gate file {uri} could not be fetched: {' '.join(str(exc).split())[:200]}")
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return GateVerdict(False, f"gate file {uri} is not JSON: {exc}")
    return judge(report, model_sha256)
