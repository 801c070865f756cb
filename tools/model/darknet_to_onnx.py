"""Convert a Darknet YOLO model (.cfg + .weights) to ONNX with onnx.helper and numpy alone.

Supports what YOLOv4-tiny uses: convolutional (batch norm folded into the weights; leaky or
linear), maxpool, route (several layers, or one layer's channel group), upsample and yolo heads.
The heads are decoded inside the graph, so the model's interface is:

    images  float32 [batch, 3, H, W]  RGB in 0..1, the frame plainly resized (no letterbox)
    boxes   float32 [batch, A, 4]     x1, y1, x2, y2 normalized to 0..1 of the image
    scores  float32 [batch, A, C]     objectness x class probability

and its metadata carries name, version, labels (JSON) and decoder=yolo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONVERTER_VERSION = "2"  # 2: COCO's own class names in the labels
# Darknet's coco.names predates COCO's published names; results use the names other tools expect.
COCO_NAMES = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
}
OPSET = 17
BN_EPSILON = 1e-5  # darknet: scales / sqrt(rolling_variance + .00001), as in its fuse_conv_batchnorm


def parse_cfg(text: str) -> list[dict]:
    """Sections in order, each a dict with 'type' and its options as strings."""
    sections: list[dict] = []
    for raw in text.splitlines():
        line = raw.split("#")[0].split(";")[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append({"type": line.strip("[]").strip()})
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][key.strip()] = value.strip()
    if not sections or sections[0]["type"] not in ("net", "network"):
        raise ValueError("a Darknet cfg starts with a [net] section")
    return sections


def ints(value: str) -> list[int]:
    return [int(v) for v in value.replace(" ", "").split(",") if v]


class WeightReader:
    """Darknet .weights: a small header, then each conv's parameters in layer order."""

    def __init__(self, data: bytes):
        major, minor, _revision = np.frombuffer(data, np.int32, 3)
        seen_bytes = 8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4
        self.values = np.frombuffer(data, np.float32, offset=12 + seen_bytes)
        self.position = 0

    def take(self, count: int) -> np.ndarray:
        if self.position + count > len(self.values):
            raise ValueError("weights file is shorter than the cfg requires")
        chunk = self.values[self.position : self.position + count]
        self.position += count
        return chunk

    def finished(self) -> bool:
        return self.position == len(self.values)


@dataclass
class Tensor:
    name: str
    channels: int
    height: int
    width: int


class GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, array: np.ndarray, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = self.name(prefix or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def convolutional(g: GraphBuilder, layer: dict, x: Tensor, weights: WeightReader) -> Tensor:
    filters = int(layer["filters"])
    size = int(layer.get("size", 1))
    stride = int(layer.get("stride", 1))
    pad = size // 2 if int(layer.get("pad", 0)) else int(layer.get("padding", 0))
    groups = int(layer.get("groups", 1))
    if int(layer.get("batch_normalize", 0)):
        biases, scales, mean, var = (weights.take(filters) for _ in range(4))
        kernel = weights.take(filters * (x.channels // groups) * size * size).reshape(
            filters, x.channels // groups, size, size
        )
        factor = scales / np.sqrt(var + BN_EPSILON)
        kernel = kernel * factor[:, None, None, None]
        bias = biases - mean * factor
    else:
        bias = weights.take(filters)
        kernel = weights.take(filters * (x.channels // groups) * size * size).reshape(
            filters, x.channels // groups, size, size
        )
    out = g.op(
        "Conv",
        [x.name, g.const(kernel.astype(np.float32), "w"), g.const(bias.astype(np.float32), "b")],
        "conv",
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[pad] * 4,
        group=groups,
    )
    activation = layer.get("activation", "linear")
    if activation == "leaky":
        out = g.op("LeakyRelu", [out], "leaky", alpha=0.1)
    elif activation == "relu":
        out = g.op("Relu", [out])
    elif activation == "logistic":
        out = g.op("Sigmoid", [out])
    elif activation != "linear":
        raise ValueError(f"unsupported activation {activation!r}")
    height = (x.height + 2 * pad - size) // stride + 1
    width = (x.width + 2 * pad - size) // stride + 1
    return Tensor(out, filters, height, width)


def maxpool(g: GraphBuilder, layer: dict, x: Tensor) -> Tensor:
    size = int(layer.get("size", layer.get("stride", 1)))
    stride = int(layer.get("stride", 1))
    padding = int(layer.get("padding", size - 1))
    # Darknet pads (padding // 2) before and the rest after, and floors the output size.
    begin, end = padding // 2, padding - padding // 2
    height = (x.height + padding - size) // stride + 1
    width = (x.width + padding - size) // stride + 1
    end_h = max(0, (height - 1) * stride + size - x.height - begin)
    end_w = max(0, (width - 1) * stride + size - x.width - begin)
    out = g.op(
        "MaxPool",
        [x.name],
        "pool",
        kernel_shape=[size, size],
        strides=[stride, stride],
        pads=[begin, begin, min(end, end_h), min(end, end_w)],
    )
    return Tensor(out, x.channels, height, width)


def route(g: GraphBuilder, layer: dict, index: int, outputs: list[Tensor]) -> Tensor:
    sources = [outputs[i if i >= 0 else index + i] for i in ints(layer["layers"])]
    groups = int(layer.get("groups", 1))
    if groups > 1:
        if len(sources) != 1:
            raise ValueError("route with groups takes one layer")
        source = sources[0]
        part = source.channels // groups
        group_id = int(layer.get("group_id", 0))
        out = g.op(
            "Slice",
            [
                source.name,
                g.const(np.array([group_id * part], np.int64)),
                g.const(np.array([(group_id + 1) * part], np.int64)),
                g.const(np.array([1], np.int64)),
            ],
            "group",
        )
        return Tensor(out, part, source.height, source.width)
    if len(sources) == 1:
        return sources[0]
    out = g.op("Concat", [s.name for s in sources], "route", axis=1)
    return Tensor(out, sum(s.channels for s in sources), sources[0].height, sources[0].width)


def upsample(g: GraphBuilder, layer: dict, x: Tensor) -> Tensor:
    stride = int(layer.get("stride", 2))
    scales = g.const(np.array([1, 1, stride, stride], np.float32))
    out = g.op("Resize", [x.name, "", scales], "up", mode="nearest")
    return Tensor(out, x.channels, x.height * stride, x.width * stride)


def yolo_head(g: GraphBuilder, layer: dict, x: Tensor, net_w: int, net_h: int) -> tuple[str, str, int]:
    """Decode one head into (boxes [N, A, 4], scores [N, A, C]) inside the graph."""
    mask = ints(layer["mask"])
    anchors = np.array(ints(layer["anchors"]), np.float32).reshape(-1, 2)[mask]
    classes = int(layer["classes"])
    scale = float(layer.get("scale_x_y", 1.0))
    n, h, w = len(mask), x.height, x.width
    # [N, n*(5+C), H, W] -> [N, n, H, W, 5+C]
    shaped = g.op("Reshape", [x.name, g.const(np.array([0, n, 5 + classes, h, w], np.int64))], "head")
    shaped = g.op("Transpose", [shaped], "head", perm=[0, 1, 3, 4, 2])

    def part(start: int, stop: int) -> str:
        return g.op(
            "Slice",
            [
                shaped,
                g.const(np.array([start], np.int64)),
                g.const(np.array([stop], np.int64)),
                g.const(np.array([4], np.int64)),
            ],
            "part",
        )

    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([grid_x, grid_y], axis=-1)[None, None]  # [1, 1, H, W, 2]
    # center = (sigmoid(t) * s - (s - 1) / 2 + grid) / grid size
    xy = g.op("Sigmoid", [part(0, 2)])
    xy = g.op("Mul", [xy, g.const(np.array(scale, np.float32))])
    xy = g.op("Add", [xy, g.const((grid - (scale - 1) / 2).astype(np.float32))])
    xy = g.op("Div", [xy, g.const(np.array([w, h], np.float32))])
    # size = exp(t) * anchor / network size
    wh = g.op("Exp", [part(2, 4)])
    wh = g.op("Mul", [wh, g.const((anchors / np.array([net_w, net_h], np.float32)).reshape(1, n, 1, 1, 2))])
    half = g.op("Mul", [wh, g.const(np.array(0.5, np.float32))])
    boxes = g.op("Concat", [g.op("Sub", [xy, half]), g.op("Add", [xy, half])], "boxes", axis=-1)
    objectness = g.op("Sigmoid", [part(4, 5)])
    scores = g.op("Mul", [objectness, g.op("Sigmoid", [part(5, 5 + classes)])], "scores")
    boxes = g.op("Reshape", [boxes, g.const(np.array([0, -1, 4], np.int64))], "boxes")
    scores = g.op("Reshape", [scores, g.const(np.array([0, -1, classes], np.int64))], "scores")
    return boxes, scores, classes


def read_labels(names_path: Path | str) -> list[str]:
    """Class names, one per line, with Darknet's spellings replaced by COCO's (motorbike -> motorcycle)."""
    names = [line.strip() for line in Path(names_path).read_text().splitlines() if line.strip()]
    return [COCO_NAMES.get(name, name) for name in names]


def convert(
    cfg_path: Path | str,
    weights_path: Path | str,
    names_path: Path | str,
    out_path: Path | str,
    name: str = "yolov4-tiny",
    source: str = "",
) -> Path:
    cfg_bytes = Path(cfg_path).read_bytes()
    weight_bytes = Path(weights_path).read_bytes()
    labels = read_labels(names_path)
    sections = parse_cfg(cfg_bytes.decode())
    net = sections[0]
    net_w, net_h, channels = int(net["width"]), int(net["height"]), int(net.get("channels", 3))
    g = GraphBuilder()
    weights = WeightReader(weight_bytes)
    x = Tensor("images", channels, net_h, net_w)
    outputs: list[Tensor] = []
    heads: list[tuple[str, str, int]] = []
    for index, layer in enumerate(sections[1:]):
        kind = layer["type"]
        if kind == "convolutional":
            x = convolutional(g, layer, x, weights)
        elif kind == "maxpool":
            x = maxpool(g, layer, x)
        elif kind == "route":
            x = route(g, layer, index, outputs)
        elif kind == "upsample":
            x = upsample(g, layer, x)
        elif kind == "yolo":
            heads.append(yolo_head(g, layer, x, net_w, net_h))
        else:
            raise ValueError(f"layer {index}: unsupported section [{kind}]")
        outputs.append(x)
    if not weights.finished():
        raise ValueError(f"weights file has {len(weights.values) - weights.position} values the cfg does not use")
    if not heads:
        raise ValueError("cfg has no [yolo] layer")
    classes = heads[0][2]
    if len(labels) != classes:
        raise ValueError(f"{names_path} has {len(labels)} labels but the model has {classes} classes")
    boxes = g.op("Concat", [b for b, _, _ in heads], "all_boxes", axis=1)
    scores = g.op("Concat", [s for _, s, _ in heads], "all_scores", axis=1)
    g.nodes.append(helper.make_node("Identity", [boxes], ["boxes"]))
    g.nodes.append(helper.make_node("Identity", [scores], ["scores"]))
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", channels, net_h, net_w])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", None, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", None, classes]),
        ],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vidpipe darknet_to_onnx",
        producer_version=CONVERTER_VERSION,
    )
    model.ir_version = 8
    weights_sha = hashlib.sha256(weight_bytes).hexdigest()
    metadata = {
        "name": name,
        "version": f"coco-darknet-{weights_sha[:12]}",
        "labels": json.dumps(labels),
        "decoder": "yolo",
        "input_format": "RGB float 0..1, plain resize",
        "source": source or f"cfg sha256 {hashlib.sha256(cfg_bytes).hexdigest()}, weights sha256 {weights_sha}",
    }
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    onnx.save(model, tmp)
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cfg", type=Path)
    parser.add_argument("weights", type=Path)
    parser.add_argument("names", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--name", default="yolov4-tiny")
    args = parser.parse_args()
    print(convert(args.cfg, args.weights, args.names, args.out, args.name))


if __name__ == "__main__":
    main()
