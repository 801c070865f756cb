"""Decode a JPEG once and resize it straight to the model's input size (pure, no I/O).

What a frame may cost is known before anything decodes it: the header's width and height are checked
against the pixel budget first, so a 631-byte file declaring 40000x40000 never reaches the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vidpipe.image_header import MAX_PIXELS, ImageHeaderError, TooLarge, check_pixel_budget, image_size


class ImageError(ValueError):
    """The bytes are not a decodable image; the message says why. `code` is the API's error code."""

    code = "undecodable_image"


class ImageTooLarge(ImageError):
    """The header declares more pixels than the budget: refused without decoding."""

    code = "too_large"


@dataclass(frozen=True)
class InputSpec:
    name: str
    layout: str  # "NCHW" or "NHWC"
    height: int
    width: int
    dtype: np.dtype
    scale: float  # applied to float inputs
    fixed_batch: int | None  # None when the batch dimension is dynamic


@dataclass(slots=True)
class PreparedImage:
    pixels: np.ndarray  # HxWx3 RGB uint8 at the model's input size
    width: int  # source size, to map boxes back
    height: int


def read_header(data: bytes | bytearray | memoryview, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) declared by a JPEG or PNG header, within the pixel budget; ImageError otherwise."""
    if len(data) == 0:
        raise ImageError("image is empty")
    try:
        width, height = image_size(data)
        check_pixel_budget(width, height, max_pixels)
    except TooLarge as exc:
        raise ImageTooLarge(str(exc)) from None
    except ImageHeaderError as exc:
        raise ImageError(str(exc)) from None
    except Exception as exc:  # whatever the header bytes do to the parser, it is this image's fault
        raise ImageError(f"unreadable image header: {_one_line(exc)}") from None
    return width, height


def decode_and_resize(
    data: bytes | bytearray | memoryview, spec: InputSpec, declared: tuple[int, int] | None = None
) -> PreparedImage:
    """Decode and resize one image; every failure is an ImageError naming why (never another exception).
    `declared`: the size read_header() returned, when the caller already checked it."""
    width, height = declared if declared is not None else read_header(data)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except Exception as exc:  # cv2.error: out of memory, corrupt stream, limits
        raise ImageError(f"image could not be decoded: {_one_line(exc)}") from None
    if image is None:
        raise ImageError("image could not be decoded (corrupt or not an image)")
    decoded_h, decoded_w = image.shape[:2]
    # EXIF orientation may rotate a JPEG by 90 degrees: the header's sides then swap.
    if (decoded_w, decoded_h) not in ((width, height), (height, width)):
        raise ImageError(f"image decoded as {decoded_w}x{decoded_h} but its header declares {width}x{height}")
    try:
        if (decoded_w, decoded_h) != (spec.width, spec.height):
            interpolation = cv2.INTER_AREA if decoded_w > spec.width else cv2.INTER_LINEAR
            image = cv2.resize(image, (spec.width, spec.height), interpolation=interpolation)
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    except Exception as exc:
        raise ImageError(f"image could not be resized: {_one_line(exc)}") from None
    return PreparedImage(image, decoded_w, decoded_h)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


class InputBuffer:
    """A reusable batch tensor: images are written into it, not stacked into new arrays."""

    def __init__(self, spec: InputSpec, capacity: int):
        self.spec = spec
        shape = (
            (capacity, 3, spec.height, spec.width) if spec.layout == "NCHW" else (capacity, spec.height, spec.width, 3)
        )
        self._tensor = np.empty(shape, dtype=spec.dtype)

    def blank(self) -> np.ndarray:
        """The whole buffer, zeroed (a full-size batch for warming the model up)."""
        self._tensor.fill(0)
        return self._tensor

    def fill(self, images: list[PreparedImage]) -> np.ndarray:
        if len(images) > len(self._tensor):
            raise ValueError(f"batch of {len(images)} exceeds buffer capacity {len(self._tensor)}")
        spec = self.spec
        floating = np.issubdtype(spec.dtype, np.floating)
        for slot, image in zip(self._tensor, images, strict=False):  # the tensor has a slot per image, and spares
            pixels = image.pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else image.pixels
            if floating:
                np.multiply(pixels, spec.scale, out=slot, casting="unsafe")
            else:
                slot[...] = pixels
        if self.spec.fixed_batch is None:
            return self._tensor[: len(images)]
        # A model with a fixed batch dimension takes exactly that many images: pad with zeros.
        self._tensor[len(images) :] = 0
        return self._tensor
