"""python -m tools.accuracy: the accuracy gate. Runs the model at a reduced precision (default bf16, on
OpenVINO) and at f32 over every frame of the sample video, and reports detection F1 at IoU 0.5 (matched
by class) and the mean and max score difference of matched detections. With --write, the report goes
beside the model as `<model>.accuracy.json` (keyed by the model file's sha256), where the inference
service reads it at start-up: INFERENCE_PRECISION=auto serves bf16 only if F1 >= 0.97 there.
`--precision int8` measures the model's int8 version instead (`python -m tools.quantize` writes it and runs
this) and writes `<model>.int8.accuracy.json`: INFERENCE_PRECISION=int8 needs F1 >= 0.95 there.

Exit codes: 0 passed, 1 failed the gate, 2 bad arguments or unreadable inputs, 3 the runtime did not
compute in the asked precision on this CPU (no AMX-BF16/AVX512-BF16: run the gate where the service runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from inference_service.accuracy_gate import gate_uri, int8_digests, int8_paths
from inference_service.calibration import CalibrationError, gate_report
from inference_service.cpu import bf16_flags
from inference_service.settings import InferenceSettings
from tools.paths import DEFAULT_MODEL, SAMPLE_VIDEO
from vidpipe.storage import sha256_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="local .onnx path (default: %(default)s)")
    parser.add_argument("--video", default=str(SAMPLE_VIDEO), help="(default: %(default)s)")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "int8", "f32"], help="the precision tested")
    parser.add_argument("--backend", default="openvino", choices=["openvino", "onnxruntime"], help="tested runtime")
    parser.add_argument(
        "--reference-backend", default="openvino", choices=["openvino", "onnxruntime"], help="f32 reference runtime"
    )
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames (default: all)")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--nms-iou", type=float, default=0.45, help="class-wise NMS IoU")
    parser.add_argument("--match-iou", type=float, default=0.5)
    parser.add_argument("--write", action="store_true", help="write the verdict beside the model")
    parser.add_argument("--out", type=Path, help="write the report here instead")
    parser.add_argument(
        "--if-needed",
        action="store_true",
        help="set-up mode (make model): do nothing when this CPU cannot compute the precision, or when the gate "
        "file beside the model already holds a report for this model's bytes",
    )
    args = parser.parse_args(argv)

    model_path = Path(args.model)
    if not model_path.is_file():
        print(f"{args.model}: no such file (an s3:// model: download it, run the gate, upload the report beside it)")
        return 2
    if args.if_needed and (reason := _not_needed(model_path, args.precision)):
        print(f"accuracy gate: {reason}", file=sys.stderr)
        return 0
    try:
        report = gate_report(
            InferenceSettings(model_uri=args.model),
            model_path,
            args.precision,
            Path(args.video),
            args.frames,
            backend=args.backend,
            reference_backend=args.reference_backend,
            score_threshold=args.score_threshold,
            nms_iou=args.nms_iou,
            match_iou=args.match_iou,
        )
    except CalibrationError as exc:
        print(exc)
        return 2
    actual = report["precision"]
    if args.precision == "int8":  # the service checks the int8 files it fetches against these
        report["int8_model_sha256"] = int8_digests(int8_paths(model_path))
    print(json.dumps(report, indent=2))
    if actual != args.precision:
        print(
            f"the runtime computed in {actual}, not {args.precision}, on this CPU (bf16 flags: "
            f"{', '.join(bf16_flags()) or 'none'}): no verdict written; run the gate on a CPU with AMX-BF16 "
            "or AVX512-BF16",
            file=sys.stderr,
        )
        return 3
    out = args.out or (Path(gate_uri(str(model_path), args.precision)) if args.write else None)
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    return 0 if report["passed"] else 1


def _not_needed(model_path: Path, precision: str) -> str | None:
    """Why the gate need not run now, or None. Without the CPU's bf16 instructions the runtime would compute
    in f32 and the verdict could not be written anyway (exit 3); an existing report for these model bytes
    stands until the model changes."""
    if precision == "bf16" and not bf16_flags():
        return "this CPU has no AMX-BF16 or AVX512-BF16: the service serves f32 here, nothing to gate"
    gate = Path(gate_uri(str(model_path), precision))
    try:
        existing = json.loads(gate.read_text())
    except (OSError, ValueError):
        return None
    if existing.get("model_sha256") == sha256_file(model_path) and existing.get("asked_precision") == precision:
        return f"{gate.name} already holds this model's verdict (f1 {existing.get('f1')})"
    return None


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
