"""Hostile images: dimension bombs, corrupt and truncated files, scan bombs, each with the answer the
inference API gives it. Shared by the inference service's tests and the fault suite."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from tests import jpeg_craft

IMAGE = np.zeros((48, 64, 3), np.uint8)
IMAGE[10:30, 10:50] = (0, 128, 255)
JPEG = cv2.imencode(".jpg", IMAGE, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
PNG = cv2.imencode(".png", IMAGE)[1].tobytes()
PROGRESSIVE = jpeg_craft.progressive_jpeg(64, 48, flat=False)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF) claims width x height: a decoder would trust it."""
    data = bytearray(JPEG)
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def png_declaring(width: int, height: int) -> bytes:
    """A small real PNG whose IHDR (with a correct CRC) claims width x height."""
    data = bytearray(PNG)
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def garbage_scan_jpeg() -> bytes:
    """A valid 64x48 header followed by random entropy-coded data and an end marker."""
    sos = JPEG.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(JPEG[sos + 2 : sos + 4], "big")
    noise = np.random.default_rng(7).integers(0, 255, 3000, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
    return JPEG[:start] + noise + b"\xff\xd9"


def corrupt_png() -> bytes:
    data = bytearray(PNG)
    idat = data.find(b"IDAT")
    for k in range(idat + 10, idat + 30):
        data[k] ^= 0x5A
    return bytes(data)


# name -> (bytes, /v1/infer status, error code or None for a result). Computed once: cheap, deterministic.
CORPUS: dict[str, tuple[bytes, int, str | None]] = {
    **{f"jpeg_bomb_{n}": (jpeg_declaring(n, n), 413, "too_large") for n in (12000, 20000, 40000)},
    **{f"png_bomb_{n}": (png_declaring(n, n), 413, "too_large") for n in (12000, 20000, 40000)},
    "jpeg_strip_1x8000000": (jpeg_declaring(65535, 1), 413, "too_large"),
    "corrupt_png": (corrupt_png(), 422, "undecodable_image"),
    "png_bad_ihdr_crc": (PNG[:29] + bytes([PNG[29] ^ 1]) + PNG[30:], 422, "undecodable_image"),
    "truncated_png": (PNG[: len(PNG) // 2], 422, "undecodable_image"),
    "png_zero_width": (png_declaring(0, 48), 422, "undecodable_image"),
    "jpeg_trailing_garbage": (JPEG + b"trailing garbage" * 4, 422, "undecodable_image"),
    "truncated_jpeg": (JPEG[: len(JPEG) // 2], 422, "undecodable_image"),
    "jpeg_zero_height": (jpeg_declaring(64, 0), 422, "undecodable_image"),
    "random_bytes": (
        np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        422,
        "undecodable_image",
    ),
    "gif": (b"GIF89a" + b"\x00" * 100, 422, "undecodable_image"),
    "soi_only": (b"\xff\xd8", 422, "undecodable_image"),
    # libjpeg recovers from bad entropy data (a grey picture, a warning): the cost is the header's, small.
    "garbage_scan_data": (garbage_scan_jpeg(), 200, None),
    # Scans: each costs the decoder a pass over the image, whatever its size (tests/jpeg_craft.py).
    "jpeg_2000_scans": (jpeg_craft.with_scans(PROGRESSIVE, 1990), 422, "too_many_scans"),
    "jpeg_64_scans": (jpeg_craft.with_scans(PROGRESSIVE, 54, refine=True), 200, None),
    "jpeg_arithmetic_sof10": (jpeg_craft.with_process(PROGRESSIVE, 0xCA), 422, "undecodable_image"),
}
