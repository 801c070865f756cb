"""The accuracy gate's runs on the machine with more cores, in one JSON (bench/device/run.sh):

- bf16 on OpenVINO against f32 on OpenVINO, over every frame of the sample video, written beside the model
  as the service's gate file (--write), so the service's `auto` precision can be checked there afterwards;
- the int8 model (in the bundle beside the model where make int8 made it) against f32 on OpenVINO, written beside
  it too, so the bench's sweep there knows whether int8 may set the limit;
- f32 on OpenVINO against f32 on onnxruntime (the two runtimes should agree).

    python -m bench.device.accuracy --out accuracy.json [--frames N]

Each entry keeps the gate's exit code (0 passed, 1 failed, 3 the CPU computed another precision) and its
report as printed, so a CPU without bf16 still leaves the f32 figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import traceback
from pathlib import Path

RUNS = {
    "bf16_vs_openvino_f32": [
        "--precision",
        "bf16",
        "--backend",
        "openvino",
        "--reference-backend",
        "openvino",
        "--write",
    ],
    # The int8 model comes in the bundle (made by make int8: NNCF is too big to bundle), judged on that CPU,
    # whose int8 kernels (AMX-INT8, VNNI) may round otherwise than this VM's.
    "int8_vs_openvino_f32": [
        "--precision",
        "int8",
        "--backend",
        "openvino",
        "--reference-backend",
        "openvino",
        "--write",
    ],
    "openvino_f32_vs_onnxruntime_f32": [
        "--precision",
        "f32",
        "--backend",
        "openvino",
        "--reference-backend",
        "onnxruntime",
    ],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, help="only the first N frames (default: all)")
    args = parser.parse_args(argv)
    from tools.accuracy.__main__ import main as gate

    results: dict = {}
    for name, gate_args in RUNS.items():
        started = time.monotonic()
        printed = io.StringIO()
        extra = ["--frames", str(args.frames)] if args.frames else []
        try:
            with contextlib.redirect_stdout(printed):
                code = gate([*gate_args, *extra])
            text = printed.getvalue()
            report = json.loads(text[: text.rindex("}") + 1]) if "}" in text else None
            results[name] = {"exit_code": code, "report": report}
        except BaseException:  # noqa: BLE001 - SystemExit included: keep going with the next run
            results[name] = {"error": traceback.format_exc(), "printed": printed.getvalue()[-2000:]}
        results[name]["seconds"] = round(time.monotonic() - started, 1)
        summary = results[name].get("report") or {}
        print(
            f"[accuracy] {name}: exit {results[name].get('exit_code')}, precision {summary.get('precision')}, "
            f"f1 {summary.get('f1')}, kept {summary.get('kept')}/{summary.get('reference_detections')}, "
            f"added {summary.get('added')}, score diff mean {summary.get('score_diff_mean')} max "
            f"{summary.get('score_diff_max')}, {results[name]['seconds']} s",
            flush=True,
        )
        if "error" in results[name]:
            print(results[name]["error"], flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
