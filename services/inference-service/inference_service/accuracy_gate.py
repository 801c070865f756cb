"""The accuracy gates' verdicts for a model: may the service compute it in bf16, or serve its int8 version?

`python -m tools.accuracy --write` runs bf16 against f32 over the sample video and writes
`<model>.accuracy.json` beside the model file (for `s3://bucket/m.onnx`: `s3://bucket/m.onnx.accuracy.json`).
`python -m tools.quantize` writes the int8 version (`<model>.int8.xml` and `.int8.bin`, OpenVINO's format) and
its verdict, `<model>.int8.accuracy.json`, the int8 model against f32 over the same video.
The service fetches those files from the same place it loads the model. A precision is allowed only when its
file names this model's sha256, the precision it measured is that one, and its F1 is at least that precision's
minimum; a missing, unreadable or stale file (another digest) means f32.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidpipe.storage import fetch_to_local, sha256_file

log = logging.getLogger(__name__)

SUFFIX = ".accuracy.json"  # the bf16 verdict
INT8_SUFFIX = ".int8.accuracy.json"
# Detection F1 (IoU 0.5, matched by class) against f32 over the sample video, below which a precision is refused.
MIN_F1 = 0.97
MIN_F1_INT8 = 0.95
# The int8 model beside the source model, in OpenVINO's own format: OpenVINO reads the QDQ ONNX that NNCF
# writes wrongly for this model (scores collapse), while it reads its own quantized IR right.
INT8_XML, INT8_BIN = ".int8.xml", ".int8.bin"
# Each int8 file by the key under which its verdict records the file's sha256.
INT8_FILES = {"int8_xml": INT8_XML, "int8_bin": INT8_BIN}


def int8_paths(model_path: Path) -> dict[str, Path]:
    """The int8 files beside a local model, by key."""
    return {key: model_path.with_name(model_path.name + suffix) for key, suffix in INT8_FILES.items()}


def int8_digests(paths: dict[str, Path]) -> dict[str, str]:
    return {key: sha256_file(path) for key, path in paths.items()}


def changed_int8_files(report: dict[str, Any], paths: dict[str, Path]) -> list[str]:
    """The suffixes of the int8 files that are not the ones the verdict measured (sha256 differs)."""
    measured = report.get("int8_model_sha256") or {}
    return [INT8_FILES[key] for key, path in paths.items() if measured.get(key) != sha256_file(path)]


def min_f1(precision: str) -> float:
    return MIN_F1_INT8 if precision == "int8" else MIN_F1


def gate_uri(model_uri: str, precision: str = "bf16") -> str:
    return model_uri + (INT8_SUFFIX if precision == "int8" else SUFFIX)


@dataclass(frozen=True)
class GateVerdict:
    precision: str  # the reduced precision judged: "bf16" | "int8"
    allowed: bool
    reason: str  # why (shown in /v1/model and the start-up log)
    report: dict[str, Any] | None = None  # the file's content, when it names this model
    # Where the verdict came from: beside_model (a file next to the model), cache or startup (measured by the
    # service before serving, startup_gate.py), none (no verdict).
    source: str = "beside_model"

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            f"{self.precision}_allowed": self.allowed,
            "reason": self.reason,
            "source": self.source if self.report is not None else "none",
        }
        if self.report is not None:
            for key in (
                "precision",
                "f1",
                "score_diff_mean",
                "score_diff_max",
                "frames",
                "video",
                "cpu",
                "gate_seconds",
                "created",
            ):
                if key in self.report:
                    described[key] = self.report[key]
        return described


def judge(report: Any, model_sha256: str, precision: str = "bf16") -> GateVerdict:
    """The verdict of a parsed gate file for the model with this digest."""
    if not isinstance(report, dict):
        return GateVerdict(precision, False, "gate file is not a JSON object")
    if report.get("model_sha256") != model_sha256:
        return GateVerdict(precision, False, "gate file is for another model (sha256 differs): run the gate again")
    if report.get("precision") != precision:
        return GateVerdict(
            precision, False, f"gate file measured precision {report.get('precision')!r}, not {precision}", report
        )
    f1 = report.get("f1")
    if not isinstance(f1, int | float) or isinstance(f1, bool):
        return GateVerdict(precision, False, "gate file has no numeric f1", report)
    least = min_f1(precision)
    if f1 < least:
        return GateVerdict(precision, False, f"{precision} failed the gate: F1 {f1:.4f} < {least}", report)
    return GateVerdict(precision, True, f"{precision} passed the gate: F1 {f1:.4f} >= {least}", report)


def read_verdict(model_uri: str, model_sha256: str, cache_dir: str, precision: str = "bf16") -> GateVerdict:
    """Fetch the precision's gate file (local path or s3://) and judge it; absent -> f32."""
    uri = gate_uri(model_uri, precision)
    try:
        path = fetch_to_local(uri, cache_dir)
    except FileNotFoundError:
        return GateVerdict(precision, False, f"no gate file {uri}")
    except Exception as exc:  # S3: a missing object is a ClientError (404); anything else is also "no verdict"
        return GateVerdict(
            precision, False, f"gate file {uri} could not be fetched: {' '.join(str(exc).split())[:200]}"
        )
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return GateVerdict(precision, False, f"gate file {uri} is not JSON: {exc}")
    return judge(report, model_sha256, precision)
