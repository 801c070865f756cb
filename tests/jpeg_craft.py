"""Real JPEGs with crafted scans, built from bytes: what a hostile producer can send past every size check.

A progressive JPEG is a frame header and a list of scans; libjpeg walks every block of a scan's component
for each scan, however few bytes the scan holds. Appending scans to a real progressive file makes a file
that every decoder accepts and that costs a pass over the image per scan (the "scan bomb").

`python -m tests.jpeg_craft` times cv2.imdecode on the worst files the header check accepts and on bombs.
"""

from __future__ import annotations

import struct
import time

import cv2
import numpy as np

SOS = b"\xff\xda"
EOI = b"\xff\xd9"
# One AC Huffman table (class 1, id 1) with a single 1-bit code '0' for the symbol 0xE0: an end-of-band run
# of 16384 + 14 extra bits, so "0" + fourteen 1s is a run of 32767 blocks in 15 bits.
_EOB_RUN_TABLE = b"\xff\xc4" + struct.pack(">H", 2 + 1 + 16 + 1) + b"\x11" + bytes([1] + [0] * 15) + b"\xe0"
_EOB_RUN_BITS = "0" + "1" * 14
_MAX_EOB_RUN = 32767


def progressive_jpeg(width: int, height: int, flat: bool = True, quality: int = 85) -> bytes:
    """A real progressive 4:4:4 JPEG from libjpeg (through OpenCV): 10 scans. `flat`: one grey level, so
    no coefficient is nonzero and a refinement scan reads no bits (the costliest case per byte)."""
    if flat:
        image = np.full((height, width, 3), 128, np.uint8)
    else:
        small = np.random.default_rng(1).integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_PROGRESSIVE,
        1,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    return cv2.imencode(".jpg", image, params)[1].tobytes()


def _pack(bits: str) -> bytes:
    """Entropy-coded bytes: padded with 1s, every FF followed by a stuffed 00."""
    bits += "1" * (-len(bits) % 8)
    out = bytearray()
    for i in range(0, len(bits), 8):
        out.append(int(bits[i : i + 8], 2))
        if out[-1] == 0xFF:
            out.append(0)
    return bytes(out)


def _blocks(jpeg: bytes) -> int:
    """8x8 blocks of the largest component (an upper bound for any one component)."""
    sof = next(i for i in range(len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC1, 0xC2))
    height, width = struct.unpack_from(">HH", jpeg, sof + 5)
    return -(-width // 8) * -(-height // 8)


def with_scans(jpeg: bytes, count: int, refine: bool = False, component: int = 1) -> bytes:
    """`jpeg` (progressive) with `count` more AC scans of one component before its end-of-image marker, each
    an end-of-band run over every block in about 10 bytes. refine=False: first scans of band 1-63 (the
    reported bomb, about 1 ms each at 4K); refine=True: refinement scans of band 1-63, where libjpeg walks
    the whole band of every block (about 7 ms each at 4K, the costliest scan per byte)."""
    assert jpeg.endswith(EOI)
    runs = -(-_blocks(jpeg) // _MAX_EOB_RUN)
    header = SOS + struct.pack(">HBBBBBB", 8, 1, component, 0x01, 1, 63, 0x10 if refine else 0x00)
    return jpeg[:-2] + _EOB_RUN_TABLE + (header + _pack(_EOB_RUN_BITS * runs)) * count + EOI


def with_process(jpeg: bytes, marker: int) -> bytes:
    """The same file with another coding process in its frame header (SOF9 arithmetic, SOF3 lossless...):
    libjpeg-turbo decodes arithmetic coding, whose cost the file size does not bound."""
    data = bytearray(jpeg)
    sof = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[sof + 1] = marker
    return bytes(data)


def segment_before_frame(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """`jpeg` with a segment (APPn, COM) holding `payload` right after its start-of-image marker."""
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def decode_seconds(data: bytes, repeat: int = 3) -> float:
    """The fastest of `repeat` cv2.imdecode runs, in seconds (a measurement, never a test assertion)."""
    array = np.frombuffer(data, np.uint8)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        image = cv2.imdecode(array, cv2.IMREAD_COLOR)
        best = min(best, time.perf_counter() - started)
        assert image is not None
    return best


def main() -> None:
    from vidpipe.image_header import MAX_SCANS, ImageHeaderError, bounded_jpeg_size, scans_allowed

    def verdict(data: bytes) -> str:
        try:
            bounded_jpeg_size(data)
        except ImageHeaderError as exc:
            return f"refused ({type(exc).__name__})"
        return "accepted"

    for width, height in ((4096, 2160), (1920, 1080)):
        allowed = scans_allowed(width, height)
        base = progressive_jpeg(width, height)
        cases = {
            "progressive, 10 scans": base,
            f"at the limit: {allowed} scans (refinement)": with_scans(base, allowed - 10, refine=True),
            f"at the limit: {allowed} scans (first AC)": with_scans(base, allowed - 10),
            f"{MAX_SCANS} scans (refinement)": with_scans(base, MAX_SCANS - 10, refine=True),
            "bomb: 2000 scans (first AC)": with_scans(base, 2000),
        }
        noisy = progressive_jpeg(width, height, flat=False, quality=98)
        cases["noisy progressive q98, 10 scans"] = noisy
        for name, data in cases.items():
            repeat = 1 if "bomb" in name else 3
            print(
                f"{width}x{height} {name}: {len(data)} bytes, {verdict(data)}, "
                f"decode {decode_seconds(data, repeat) * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
