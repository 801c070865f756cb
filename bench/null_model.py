"""A model that costs nothing, shaped like a real one, for the bench's service ceiling (g).

It takes the same input as the model it imitates (name, type, shape, and the metadata the service reads:
decoder, labels, input format) and answers one box per image, scored above the default threshold, so the
service decodes, resizes, batches, runs NMS and writes JSON exactly as for the real model, while the model
itself takes microseconds. The service's frames/s on it is then what the service can do at most on this
machine with these settings, and the real model's figure divided by it says how much of the gap to the
bare limit is the service's own work. YOLO-decoder models only (the default model's kind).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

NULL_NAME = "null"
BOX = (0.1, 0.1, 0.5, 0.5)  # x1, y1, x2, y2 in 0..1
SCORE = 0.9


def null_model(like: Path, out: Path) -> Path:
    source = onnx.load(str(like), load_external_data=False)
    meta = {p.key: p.value for p in source.metadata_props}
    if meta.get("decoder") != "yolo":
        raise ValueError(
            f"{like.name}: the service ceiling imitates YOLO-decoder models only (decoder {meta.get('decoder')!r})"
        )
    labels = json.loads(meta["labels"])
    initializers = {i.name for i in source.graph.initializer}
    (image,) = [i for i in source.graph.input if i.name not in initializers]
    rank = len(image.type.tensor_type.shape.dim)
    scores = np.zeros((1, 1, len(labels)), np.float32)
    scores[0, 0, min(2, len(labels) - 1)] = SCORE
    constants = {
        "starts": np.zeros(rank - 1, np.int64),
        "ends": np.ones(rank - 1, np.int64),
        "axes": np.arange(1, rank, dtype=np.int64),
        "per_image": np.array([-1, 1, 1], np.int64),
        "zero_box": np.zeros((1, 1, 4), np.float32),
        "box": np.array([[BOX]], np.float32),
        "zero_scores": np.zeros((1, 1, len(labels)), np.float32),
        "scores_const": scores,
    }
    nodes = [  # one pixel per image, times zero, plus the constant answer: the batch size flows through
        helper.make_node("Slice", [image.name, "starts", "ends", "axes"], ["pixel"]),
        helper.make_node("Reshape", ["pixel", "per_image"], ["zero_shaped"]),
        helper.make_node("Mul", ["zero_shaped", "zero_box"], ["boxes_zero"]),
        helper.make_node("Add", ["boxes_zero", "box"], ["boxes"]),
        helper.make_node("Mul", ["zero_shaped", "zero_scores"], ["scores_zero"]),
        helper.make_node("Add", ["scores_zero", "scores_const"], ["scores"]),
    ]
    outputs = [
        helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, ["batch", 1, 4]),
        helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["batch", 1, len(labels)]),
    ]
    graph = helper.make_graph(
        nodes, NULL_NAME, [image], outputs, [numpy_helper.from_array(v, k) for k, v in constants.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {
        **meta,
        "name": NULL_NAME,
        "version": "1",
        "source": f"bench.null_model, imitating {like.name}",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out
