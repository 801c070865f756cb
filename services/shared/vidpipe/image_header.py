"""Image dimensions from the header bytes alone, so a frame's cost is known before anything decodes it.

A JPEG or PNG is a few hundred bytes of header in front of a width and height the decoder will trust:
a 631-byte file can declare 12000x12000 and make a decoder allocate gigabytes. The consumer (triage)
and the inference service both read the declared size here and refuse what is over the pixel budget.
"""

from __future__ import annotations

import struct

# Default pixel budget: DCI 4K (4096x2160) and anything smaller; about 26 MB as decoded BGR.
MAX_PIXELS = 4096 * 2160
# No side may exceed this, whatever the budget (a 1x8,000,000 strip is no camera frame).
MAX_SIDE = 16384

# Real files hold a few segments (APPn, DQT, DHT...) before the frame header and a fill byte or two;
# a crafted file of thousands of tiny segments or megabytes of fill bytes would make this scan cost
# more than decoding. Past these bounds the file is refused.
MAX_SEGMENTS_BEFORE_FRAME = 256
MAX_FILL_BYTES = 64

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IHDR = struct.Struct(">I4sII")


class ImageHeaderError(ValueError):
    """The bytes are not an image this pipeline reads; the message says why."""


class NotAJpeg(ImageHeaderError):
    pass


class TooLarge(ImageHeaderError):
    """The image declares more pixels than the budget (reason code `too_large`)."""


def jpeg_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(width, height) from the SOF segment; raises NotAJpeg with the reason."""
    n = len(data)
    if n < 4:
        raise NotAJpeg(f"{n} bytes is too short for a JPEG")
    if data[0] != 0xFF or data[1] != 0xD8:
        raise NotAJpeg("missing JPEG start-of-image marker (FF D8)")
    pos = 2
    segments = 0
    fill = 0
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise NotAJpeg(f"corrupt JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            fill += 1
            if fill > MAX_FILL_BYTES:
                raise NotAJpeg(f"corrupt JPEG: more than {MAX_FILL_BYTES} fill bytes at byte {pos}")
            pos += 1
            continue
        fill = 0
        segments += 1
        if segments > MAX_SEGMENTS_BEFORE_FRAME:
            raise NotAJpeg(f"corrupt JPEG: more than {MAX_SEGMENTS_BEFORE_FRAME} segments before the frame header")
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


def png_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG format requires first."""
    if len(data) < 8 + _PNG_IHDR.size or bytes(data[:8]) != PNG_SIGNATURE:
        raise ImageHeaderError("not a PNG: missing signature or IHDR chunk")
    length, kind, width, height = _PNG_IHDR.unpack_from(data, 8)
    if kind != b"IHDR" or length != 13:
        raise ImageHeaderError("corrupt PNG: the first chunk is not a 13-byte IHDR")
    if width == 0 or height == 0:
        raise ImageHeaderError(f"PNG declares an empty image ({width}x{height})")
    return width, height


def image_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(width, height) of a JPEG or PNG, from its header; ImageHeaderError for anything else."""
    if len(data) >= 2 and data[0] == 0xFF and data[1] == 0xD8:
        return jpeg_size(data)
    if len(data) >= 8 and bytes(data[:8]) == PNG_SIGNATURE:
        return png_size(data)
    raise ImageHeaderError("not a JPEG or PNG image (unknown signature)")


def check_pixel_budget(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    """Raise TooLarge when decoding width x height would cost more than the budget allows."""
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise TooLarge(
            f"image declares {width}x{height} ({width * height} pixels), over the budget of "
            f"{max_pixels} pixels and {MAX_SIDE} per side"
        )
