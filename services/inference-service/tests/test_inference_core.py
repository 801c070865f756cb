"""Inference core without HTTP: decoding, NMS, batching."""

import threading
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from inference_service.batcher import DynamicBatcher, QueueFull
from inference_service.decoders import RawDecoder, YoloDecoder, nms
from inference_service.preprocess import ImageError, InputBuffer, InputSpec, decode_and_resize, read_mode

SPEC = InputSpec("images", "NCHW", 32, 32, np.dtype(np.float32), 1 / 255, None)


def test_decode_and_resize_keeps_source_size_and_rgb():
    image = np.zeros((48, 64, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    prepared = decode_and_resize(cv2.imencode(".png", image)[1].tobytes(), SPEC)
    assert (prepared.width, prepared.height) == (64, 48)
    assert prepared.pixels.shape == (32, 32, 3) and prepared.pixels[0, 0, 0] == 255  # red first: RGB
    tensor = InputBuffer(SPEC, 4).fill([prepared, prepared])
    assert tensor.shape == (2, 3, 32, 32) and np.isclose(tensor[1, 0, 0, 0], 1.0)


def _photo(width: int, height: int) -> np.ndarray:
    """A smooth gradient with a bright square: something a reduced decode must keep."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1).astype(np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = 255
    return image


def _exif_rotated(jpeg: bytes, orientation: int = 6) -> bytes:
    """The JPEG with an EXIF APP1 segment saying its pixels are to be rotated (6: 90 degrees clockwise)."""
    tiff = b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01"
    tiff += orientation.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x00\x00\x00"
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_a_large_jpeg_is_decoded_reduced_when_asked_and_still_maps_boxes_to_its_full_size():
    photo = _photo(200, 120)  # 32x32 input: decoded at 1/2 (100x60), the largest that covers 32 both ways
    jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert read_mode(jpeg, 200, 120, SPEC)[1] == 1  # off by default: decoded whole
    spec = replace(SPEC, reduced_jpeg_decode=True)
    assert read_mode(jpeg, 200, 120, spec)[1] == 2
    prepared = decode_and_resize(jpeg, spec)
    assert (prepared.width, prepared.height) == (200, 120)
    whole = cv2.resize(
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), (32, 32), interpolation=cv2.INTER_AREA
    )
    assert np.abs(prepared.pixels.astype(int) - whole[..., ::-1].astype(int)).mean() < 2.0

    for each in (SPEC, spec):  # EXIF rotation: the sides swap, reduced or not
        rotated = decode_and_resize(_exif_rotated(jpeg), each)
        assert (rotated.width, rotated.height) == (120, 200)

    png = cv2.imencode(".png", photo)[1].tobytes()
    assert read_mode(png, 200, 120, spec)[1] == 1  # only JPEG decodes reduced
    assert read_mode(jpeg, 60, 40, spec)[1] == 1  # under twice the input: decoded whole
    assert decode_and_resize(png, spec).width == 200


@pytest.mark.parametrize(
    "data, message", [(b"", "empty"), (b"\xff\xd8garbage", "corrupt JPEG"), (b"GIF89a....", "not a JPEG or PNG")]
)
def test_undecodable_images_raise(data, message):
    with pytest.raises(ImageError, match=message):
        decode_and_resize(data, SPEC)


def test_nms_suppresses_overlaps_keeps_distinct():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.5) == [0, 2]


def test_yolo_decoder_maps_to_source_pixels_per_class():
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]], np.float32)
    scores = np.zeros((1, 3, 3), np.float32)
    scores[0, 0, 1] = 0.9  # a car
    scores[0, 1, 2] = 0.8  # same box, other class: kept (class-wise NMS)
    scores[0, 2, 1] = 0.1  # under threshold
    out = YoloDecoder(["person", "car", "bicycle"], 0.3, 0.45, 10).decode(
        {"boxes": boxes, "scores": scores}, 0, 200, 100
    )
    assert [(d["label"], d["box"]) for d in out["detections"]] == [
        ("car", [20.0, 10.0, 100.0, 50.0]),
        ("bicycle", [20.0, 10.0, 100.0, 50.0]),
    ]


def test_raw_decoder_returns_tensors():
    out = RawDecoder().decode({"logits": np.arange(6, dtype=np.float32).reshape(2, 3)}, 1, 1, 1)
    assert out["outputs"]["logits"] == {
        "shape": [3],
        "dtype": "float32",
        "data": [3.0, 4.0, 5.0],
        "min": 3.0,
        "max": 5.0,
        "mean": 4.0,
    }


def test_batcher_groups_concurrent_items_and_bounds_queue():
    sizes = []
    release = threading.Event()

    def run(items):
        release.wait(5)
        sizes.append(len(items))
        return [i * 2 for i in items]

    batcher = DynamicBatcher(run, max_batch=4, max_delay_s=0.05, max_queue=6)
    first = batcher.submit([1])  # occupies the worker
    time.sleep(0.1)
    rest = batcher.submit([2, 3, 4, 5, 6])
    with pytest.raises(QueueFull):
        batcher.submit([7, 8])
    release.set()
    assert [f.result(5) for f in first + rest] == [2, 4, 6, 8, 10, 12]
    batcher.close()
    assert sizes == [1, 4, 1]


def test_batcher_delivers_errors_and_keeps_working():
    def run(items):
        if 0 in items:
            raise RuntimeError("model failed")
        return items

    batcher = DynamicBatcher(run, max_batch=2, max_delay_s=0.0, max_queue=4)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.submit([0])[0].result(5)
    assert batcher.submit([5])[0].result(5) == 5
    batcher.close()
