"""Where the project keeps what set-up fetches (ignored by git): one definition for every tool."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
DEFAULT_MODEL = CACHE / "models" / "yolov4-tiny.onnx"
SAMPLE_VIDEO = CACHE / "media" / "bikes.mp4"
