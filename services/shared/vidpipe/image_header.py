"""Image dimensions from the header bytes alone, so a frame's cost is known before anything decodes it.

A JPEG or PNG is a few hundred bytes of header in front of a width and height the decoder will trust:
a 631-byte file can declare 12000x12000 and make a decoder allocate gigabytes. The consumer (triage)
and the inference service both read the declared size here and refuse what is over the pixel budget.

Memory is not the only cost: CPU time is too. What decoding costs (libjpeg-turbo and libpng as OpenCV
bundles them; measured on a 2-vCPU AMD EPYC, 4096x2160, see bounded_jpeg_size):
- Huffman-coded JPEG (baseline, extended, progressive): the pixels once (inverse DCT, colour), the
  entropy-coded bits once, and per scan a pass over every block of the scan's components whether or not
  the scan holds any data (libjpeg keeps going on zeros when a scan's data runs out). That per-scan pass is
  the bomb: a 26-byte scan costs about 1 ms at 4K (about 5 ms for a refinement scan's band walk), so a
  4 MiB file of such scans costs minutes. Scans are counted here and bounded: at most MAX_SCANS, and
  scans x pixels at most SCANS_AT_PIXEL_LIMIT x the pixel budget. Restart markers cost a constant per
  interval, itself paid for by the bytes or bounded by the blocks. So one frame costs at most a small
  multiple of an ordinary decode.
- Arithmetic-coded JPEG (SOF9-SOF15): a decision can cost far less than a bit and the decoder keeps
  decoding zeros after the data ends (measured: an 827-byte file of 64 empty scans, 1.1 s at 4K), so the
  file size bounds nothing. Lossless (SOF3) and hierarchical (SOF5-SOF7) JPEG are no camera's output
  either. All are refused; cameras write baseline or progressive Huffman-coded JPEG.
- PNG: one inflate of width x height x bytes per pixel and one unfilter pass (libpng stops inflating at the
  end of the image and caps ancillary chunks; OpenCV decodes the first frame of an APNG only): bounded by
  the pixel budget.
"""

from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass

# Default pixel budget: DCI 4K (4096x2160) and anything smaller; about 26 MB as decoded BGR.
MAX_PIXELS = 4096 * 2160
# No side may exceed this, whatever the budget (a 1x8,000,000 strip is no camera frame).
MAX_SIDE = 16384

# Real files hold a few segments (APPn, DQT, DHT...) before the frame header and a fill byte or two;
# a crafted file of thousands of tiny segments or megabytes of fill bytes would make this scan cost
# more than decoding. Past these bounds the file is refused.
MAX_SEGMENTS_BEFORE_FRAME = 256
MAX_FILL_BYTES = 64

# Scans (SOS markers) decoded per JPEG. Real encoders write 1 (baseline), 10 (libjpeg's progressive script
# for YCbCr; 6 for greyscale, 18 for CMYK), a few more (mozjpeg's optimized scripts); 64 leaves room for
# hand-written jpegtran scripts and still bounds the per-scan cost. A frame at the pixel budget may have up to
# SCANS_AT_PIXEL_LIMIT scans, smaller frames proportionally more (up to MAX_SCANS): the per-scan cost is per
# block, so scans x pixels is what the CPU pays.
MAX_SCANS = 64
SCANS_AT_PIXEL_LIMIT = 32

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Huffman-coded DCT: baseline, extended sequential, progressive. The others, by name, for the refusal.
_BOUNDED_PROCESSES = {0xC0, 0xC1, 0xC2}
_PROCESS_NAMES = {
    0xC3: "lossless",
    0xC5: "hierarchical",
    0xC6: "hierarchical",
    0xC7: "hierarchical",
    0xC9: "arithmetic-coded",
    0xCA: "arithmetic-coded",
    0xCB: "arithmetic-coded",
    0xCD: "arithmetic-coded hierarchical",
    0xCE: "arithmetic-coded hierarchical",
    0xCF: "arithmetic-coded hierarchical",
}
_SOS = re.compile(rb"\xff\xda")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IHDR = struct.Struct(">I4sII")


class ImageHeaderError(ValueError):
    """The bytes are not an image this pipeline reads; the message says why."""


class NotAJpeg(ImageHeaderError):
    pass


class TooLarge(ImageHeaderError):
    """The image declares more pixels than the budget (reason code `too_large`)."""


class UnsupportedJpeg(NotAJpeg):
    """A JPEG coding process whose decoding cost the file size does not bound (arithmetic, lossless,
    hierarchical): refused before decoding."""


class TooManyScans(ImageHeaderError):
    """A JPEG with more scans than its size allows (reason code `too_many_scans`): each scan costs a pass
    over the image's blocks, however few bytes it holds."""


@dataclass(frozen=True, slots=True)
class JpegFrame:
    width: int
    height: int
    process: int  # the SOF marker's second byte: 0xC0 baseline, 0xC2 progressive...
    end: int  # offset just past the frame header: every scan comes after it


def jpeg_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(width, height) from the SOF segment; raises NotAJpeg with the reason."""
    frame = jpeg_frame(data)
    return frame.width, frame.height


def jpeg_frame(data: bytes | bytearray | memoryview) -> JpegFrame:
    """The frame header (SOF): size, coding process and where it ends; raises NotAJpeg with the reason."""
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
            return JpegFrame(width, height, marker, pos + 2 + length)
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


def count_scans(data: bytes | bytearray | memoryview, start: int = 0, limit: int = MAX_SCANS) -> int:
    """Scans (SOS markers) from `start`, counted up to limit + 1: an upper bound on the scans a decoder reads.

    Every scan libjpeg reads starts with the bytes FF DA (a marker is FF, optional FF fill bytes, then the
    code), each at its own offset, so counting the pairs cannot miss one. Inside entropy-coded data an FF is
    always followed by 00 (stuffing) or a marker, so the count only errs high where a segment's payload
    (APPn, COM, DHT) after the frame header holds FF DA by chance: a few at most in a real file.
    The search runs in C (no Python step per byte) and stops at limit + 1: about 1.5 ms for 4 MiB here."""
    return sum(1 for _ in itertools.islice(_SOS.finditer(data, start), limit + 1))


def scans_allowed(width: int, height: int, max_pixels: int = MAX_PIXELS) -> int:
    """Scans decoded for a width x height JPEG: MAX_SCANS, fewer for large frames so that scans x pixels
    stays within SCANS_AT_PIXEL_LIMIT x the pixel budget (32 at the budget itself)."""
    return max(1, min(MAX_SCANS, SCANS_AT_PIXEL_LIMIT * max_pixels // max(1, width * height)))


def bounded_jpeg_size(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of a JPEG whose decoding cost is bounded, from its header alone: NotAJpeg for a bad
    structure, UnsupportedJpeg for a coding process other than Huffman DCT, TooLarge over the pixel budget,
    TooManyScans over the scan budget.

    Measured (cv2.imdecode, 2-vCPU AMD EPYC; python -m tests.jpeg_craft): a 4096x2160 4:4:4 progressive file
    with the most scans allowed there (32), every extra one a refinement scan over the whole band (the
    costliest per byte), decodes in about 0.2 s, against 0.1 s for the same picture's 10 ordinary scans and
    0.16 s for a 4 MiB one; 2000 scans took 1.8 s, and a 4 MiB file of them would take minutes."""
    frame = jpeg_frame(data)
    check_pixel_budget(frame.width, frame.height, max_pixels)
    if frame.process not in _BOUNDED_PROCESSES:
        kind = _PROCESS_NAMES.get(frame.process, "unknown")
        raise UnsupportedJpeg(
            f"{kind} JPEG (SOF{frame.process - 0xC0}) is not decoded here: its decoding cost is not bounded by "
            "its size; send baseline or progressive (Huffman-coded) JPEG"
        )
    allowed = scans_allowed(frame.width, frame.height, max_pixels)
    scans = count_scans(data, frame.end, allowed)
    if scans > allowed:
        raise TooManyScans(
            f"JPEG has more than {allowed} scans (SOS markers), the most decoded for a {frame.width}x{frame.height} "
            f"image ({MAX_SCANS} at most, and scans x pixels within {SCANS_AT_PIXEL_LIMIT} x the {max_pixels}-pixel "
            "budget); encoders write 1 to about 20"
        )
    return frame.width, frame.height


def bounded_image_size(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of a JPEG or PNG whose decoding cost is bounded (see bounded_jpeg_size); a PNG's cost
    is its pixels'. ImageHeaderError (or a subclass) naming why not."""
    if len(data) >= 2 and data[0] == 0xFF and data[1] == 0xD8:
        return bounded_jpeg_size(data, max_pixels)
    width, height = image_size(data)
    check_pixel_budget(width, height, max_pixels)
    return width, height


def check_pixel_budget(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    """Raise TooLarge when decoding width x height would cost more than the budget allows."""
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise TooLarge(
            f"image declares {width}x{height} ({width * height} pixels), over the budget of "
            f"{max_pixels} pixels and {MAX_SIDE} per side"
        )
