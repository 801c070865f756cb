"""python -m tools.quantize: the model's int8 version, by NNCF post-training quantization calibrated on the
sample video's frames, then its accuracy gate (int8 against f32 over every frame, F1 >= 0.95).

Writes `<model>.int8.xml` and `<model>.int8.bin` (OpenVINO's format) and `<model>.int8.accuracy.json` beside
the model; the inference service serves them under INFERENCE_PRECISION=int8 only with a passed verdict for
these model bytes. For an s3:// model: run this on a local copy and upload the three files beside it.

Exit codes: 0 passed, 1 failed the gate (the files stay, the service refuses them), 2 bad arguments or
unreadable inputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from inference_service.accuracy_gate import changed_int8_files, gate_uri, int8_paths
from inference_service.calibration import frames
from inference_service.model import LoadedModel, load_model
from inference_service.preprocess import InputBuffer, decode_and_resize
from inference_service.settings import InferenceSettings
from tools.accuracy.__main__ import main as accuracy_gate
from tools.paths import DEFAULT_MODEL, SAMPLE_VIDEO
from vidpipe.storage import sha256_file

# Left in f32: the element-wise arithmetic of a detector's output decoding (sigmoids, exponentials, the box
# arithmetic). Quantized, YOLOv4-tiny's scores collapsed (0.51 where f32 gives 0.91: the product of two
# quantized sigmoids); the convolutions carry the cost anyway.
F32_OPERATION_TYPES = ["Sigmoid", "Exp", "Multiply", "Add", "Subtract", "Divide"]


def calibration(model: LoadedModel, video: Path, count: int) -> list[np.ndarray]:
    """`count` frames spread over the video, prepared exactly as the service prepares them."""
    encoded = list(frames(video, None))
    if not encoded:
        raise SystemExit(f"{video}: no frames")
    step = max(1, len(encoded) // count)
    buffer = InputBuffer(model.input, 1)
    return [buffer.fill([decode_and_resize(data, model.input)]).copy() for data in encoded[::step][:count]]


def quantize(model_path: Path, samples: list[np.ndarray]) -> tuple[Path, Path]:
    """NNCF's post-training quantization: per-channel int8 weights, int8 activations calibrated on the samples."""
    import nncf  # type: ignore[import-untyped]
    import openvino as ov  # type: ignore[import-untyped]

    quantized = nncf.quantize(
        ov.Core().read_model(str(model_path)),
        nncf.Dataset(samples),
        preset=nncf.QuantizationPreset.MIXED,  # asymmetric activations: LeakyReLU's outputs are mostly positive
        subset_size=len(samples),
        ignored_scope=nncf.IgnoredScope(types=F32_OPERATION_TYPES, validate=False),
    )
    xml, binary = int8_paths(model_path).values()
    # Written aside, then renamed: a run cut short never leaves a half-written pair the service could load.
    partial = model_path.with_name(model_path.name + ".int8-partial.xml")
    ov.save_model(quantized, str(partial), compress_to_fp16=False)
    partial.with_suffix(".bin").replace(binary)
    partial.replace(xml)
    return xml, binary


def up_to_date(model_path: Path) -> str | None:
    """Why nothing needs doing: the pair and a verdict for these model bytes and these int8 files exist."""
    gate = Path(gate_uri(str(model_path), "int8"))
    try:
        report = json.loads(gate.read_text())
    except (OSError, ValueError):
        return None
    pair = int8_paths(model_path)
    if report.get("model_sha256") != sha256_file(model_path) or not all(p.is_file() for p in pair.values()):
        return None
    if changed_int8_files(report, pair):
        return None
    return f"{gate.name} already holds this model's int8 verdict (f1 {report.get('f1')})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="local .onnx path (default: %(default)s)")
    parser.add_argument("--video", default=str(SAMPLE_VIDEO), help="calibration and gate frames (%(default)s)")
    parser.add_argument("--calibration-frames", type=int, default=300, help="at most this many, spread evenly")
    parser.add_argument("--frames", type=int, default=None, help="gate on the first N frames only (default: all)")
    parser.add_argument("--if-needed", action="store_true", help="set-up mode (make model): skip when up to date")
    args = parser.parse_args(argv)
    model_path = Path(args.model)
    if not model_path.is_file() or not Path(args.video).is_file():
        print(f"{args.model} or {args.video}: no such file", file=sys.stderr)
        return 2
    if args.if_needed and (reason := up_to_date(model_path)):
        print(f"int8: {reason}", file=sys.stderr)
        return 0
    logging.getLogger("nncf").setLevel(logging.WARNING)
    started = time.perf_counter()
    # The model's own input (float, its layout), as NNCF feeds it: onnxruntime's view of it, since OpenVINO's
    # backend takes uint8 pixels and converts inside its graph.
    reference = load_model(InferenceSettings(model_uri=str(model_path), backend="onnxruntime", instances=1))
    samples = calibration(reference, Path(args.video), args.calibration_frames)
    xml, _ = quantize(model_path, samples)
    took = time.perf_counter() - started
    print(f"int8: {xml} from {len(samples)} calibration frames in {took:.1f}s", file=sys.stderr)
    gate = ["--model", str(model_path), "--video", args.video, "--precision", "int8", "--write"]
    return accuracy_gate(gate + (["--frames", str(args.frames)] if args.frames else []))


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
