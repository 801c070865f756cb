"""What every benchmark shares: where results go, the videos, a log line, frames as pixels and as JPEGs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from tools.paths import CACHE, ROOT

RESULTS = ROOT / "bench" / "results"
HD_VIDEO = CACHE / "media" / "bigbuckbunny.mp4"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def video_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def jpegs(frames: list[np.ndarray], quality: int = 85) -> list[bytes]:
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes() for f in frames]


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(path)
