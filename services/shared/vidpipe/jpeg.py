"""Cheap structural checks on JPEG bytes, without decoding pixels.

The consumer uses these to dead-letter records that cannot be a JPEG before spending an
inference slot on them; full decoding still happens once, in the inference service.
"""
from __future__ import annotations

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class NotAJpeg(ValueError):
    pass


def jpeg_size(data: bytes | memoryview) -> tuple[int, int]:
    """(width, height) from the SOF segment; raises NotAJpeg with the reason."""
    n = len(data)
    if n < 4:
        raise NotAJpeg(f"{n} bytes is too short for a JPEG")
    if data[0] != 0xFF or data[1] != 0xD8:
        raise NotAJpeg("missing JPEG start-of-image marker (FF D8)")
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise NotAJpeg(f"corrupt JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2:
            raise NotAJpeg(f"corrupt JPEG: segment length {length} at byte {pos}")
        if marker in _SOF_MARKERS:
            if pos + 9 > n:
                break
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            if width == 0 or height == 0:
                raise NotAJpeg(f"JPEG declares an empty image ({width}x{height})")
            if data[n - 2] != 0xFF or data[n - 1] != 0xD9:
                raise NotAJpeg("JPEG is truncated: no end-of-image marker (FF D9)")
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise NotAJpeg("corrupt JPEG: no frame header (SOF) found")
