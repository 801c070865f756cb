"""Decode a JPEG once and resize it straight to the model's input size (pure, no I/O)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


class ImageError(ValueError):
    """The bytes are not a decodable image; the message says why."""


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


def decode_and_resize(data: bytes | memoryview, spec: InputSpec) -> PreparedImage:
    if len(data) == 0:
        raise ImageError("image is empty")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError("image could not be decoded (corrupt or not an image)")
    height, width = image.shape[:2]
    if (width, height) != (spec.width, spec.height):
        interpolation = cv2.INTER_AREA if width > spec.width else cv2.INTER_LINEAR
        image = cv2.resize(image, (spec.width, spec.height), interpolation=interpolation)
    cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    return PreparedImage(image, width, height)


class InputBuffer:
    """A reusable batch tensor: images are written into it, not stacked into new arrays."""

    def __init__(self, spec: InputSpec, capacity: int):
        self.spec = spec
        shape = (capacity, 3, spec.height, spec.width) if spec.layout == "NCHW" else (capacity, spec.height, spec.width, 3)
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
        for slot, image in zip(self._tensor, images):
            pixels = image.pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else image.pixels
            if floating:
                np.multiply(pixels, spec.scale, out=slot, casting="unsafe")
            else:
                slot[...] = pixels
        return self._tensor[: len(images)]
