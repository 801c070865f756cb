"""The converted default model: its interface, and sensible detections on the real sample video."""

import json
from collections import Counter

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from inference_service.decoders import YoloDecoder

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def session(default_model):
    return ort.InferenceSession(str(default_model), providers=["CPUExecutionProvider"])


def test_interface_and_metadata(session, default_model):
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("images", ["batch", 3, 416, 416])]
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores"]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["name"] == "yolov4-tiny" and meta["decoder"] == "yolo"
    labels = json.loads(meta["labels"])
    assert len(labels) == 80 and labels[:3] == ["person", "bicycle", "car"]
    # COCO's own names, as other tools expect them, not Darknet's spellings (motorbike, diningtable)
    assert {"motorcycle", "airplane", "couch", "potted plant", "dining table", "tv"} <= set(labels)
    assert not {"motorbike", "aeroplane", "sofa", "pottedplant", "diningtable", "tvmonitor"} & set(labels)
    assert meta["version"] == "coco-darknet-cf9fbfd0f6d4"  # the first hex digits of the weights' sha256
    onnx.checker.check_model(str(default_model))


def test_detects_the_street_scene(session, sample_video):
    labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
    decoder = YoloDecoder(labels, 0.3, 0.45, 100)
    capture = cv2.VideoCapture(str(sample_video))
    seen: Counter = Counter()
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index % 5 == 0:
            tensor = cv2.resize(image, (416, 416))[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
            outputs = dict(zip(["boxes", "scores"], session.run(None, {"images": tensor}), strict=True))
            seen.update({d["label"] for d in decoder.decode(outputs, 0, 640, 272)["detections"]})
        index += 1
    # bikes.mp4: a street with cars, people and bicycles. Frames in which each appears, of 50 sampled:
    assert seen["car"] >= 5 and seen["person"] >= 5 and seen["bicycle"] >= 3, seen
