"""The Darknet converter against an independent numpy forward pass of a small synthetic network."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tools.model.darknet_to_onnx import convert, parse_cfg

CFG = """
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-2

[maxpool]
size=2
stride=2

[convolutional]
filters=14
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=4,6, 10,12, 20,24
classes=2
num=3
scale_x_y=1.05

[route]
layers=-3

[upsample]
stride=2

[convolutional]
filters=7
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=2
anchors=4,6, 10,12, 20,24
classes=2
num=3
scale_x_y=1.05
"""


def leaky(x):
    return np.where(x > 0, x, 0.1 * x)


def conv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    f, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, f, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out + b[None, :, None, None]


def bn_conv(x, params, stride, pad, activation=True):
    biases, scales, mean, var, w = params
    y = conv(x, w, np.zeros_like(biases), stride, pad)
    y = (
        scales[None, :, None, None] * (y - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
        + biases[None, :, None, None]
    )
    return leaky(y) if activation else y


def decode(raw, anchors, classes, net):
    n, _, h, w = raw.shape
    a = len(anchors)
    r = raw.reshape(n, a, 5 + classes, h, w).transpose(0, 1, 3, 4, 2)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    cx = (sig(r[..., 0]) * 1.05 - 0.025 + gx) / w
    cy = (sig(r[..., 1]) * 1.05 - 0.025 + gy) / h
    bw = np.exp(r[..., 2]) * np.array(anchors)[:, 0][None, :, None, None] / net
    bh = np.exp(r[..., 3]) * np.array(anchors)[:, 1][None, :, None, None] / net
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).reshape(n, -1, 4)
    scores = (sig(r[..., 4:5]) * sig(r[..., 5:])).reshape(n, -1, classes)
    return boxes, scores


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("darknet")
    (folder / "tiny.cfg").write_text(CFG)
    (folder / "tiny.names").write_text("thing\nother\n")
    layers = []

    def bn(filters, channels, k):
        p = [
            rng.normal(0, 0.1, filters),
            rng.uniform(0.5, 1.5, filters),
            rng.normal(0, 0.1, filters),
            rng.uniform(0.5, 1.5, filters),
            rng.normal(0, 0.3, (filters, channels, k, k)),
        ]
        layers.append(p)
        return p

    def plain(filters, channels):
        p = [rng.normal(0, 0.1, filters), rng.normal(0, 0.3, (filters, channels, 1, 1))]
        layers.append(p)
        return p

    c1, c2, c3, c4 = bn(8, 3, 3), bn(4, 4, 3), plain(14, 8), plain(7, 8)
    header = np.array([0, 2, 5], np.int32).tobytes() + np.array([0], np.int64).tobytes()
    body = b"".join(np.concatenate([np.ravel(a) for a in p]).astype(np.float32).tobytes() for p in layers)
    (folder / "tiny.weights").write_bytes(header + body)
    path = convert(folder / "tiny.cfg", folder / "tiny.weights", folder / "tiny.names", folder / "tiny.onnx", "tiny")
    return path, (c1, c2, c3, c4)


def test_matches_numpy_forward_pass(converted):
    path, (c1, c2, c3, c4) = converted
    x = np.random.default_rng(1).uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    boxes, scores = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})

    l0 = bn_conv(x.astype(np.float64), c1, 2, 1)  # 8x16x16
    l1 = l0[:, 4:]  # second half of the channels
    l2 = bn_conv(l1, c2, 1, 1)
    l3 = np.concatenate([l2, l1], 1)
    l4 = l3.reshape(2, 8, 8, 2, 8, 2).max(axis=(3, 5))  # 2x2 maxpool
    head1 = conv(l4, c3[1], c3[0], 1, 0)
    up = l4.repeat(2, axis=2).repeat(2, axis=3)
    head2 = conv(up, c4[1], c4[0], 1, 0)
    b1, s1 = decode(head1, [(4, 6), (10, 12)], 2, 32)
    b2, s2 = decode(head2, [(20, 24)], 2, 32)
    np.testing.assert_allclose(boxes, np.concatenate([b1, b2], 1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores, np.concatenate([s1, s2], 1), rtol=1e-4, atol=1e-5)
    assert boxes.shape == (2, 2 * 8 * 8 + 1 * 16 * 16, 4)


def test_metadata_describes_the_model(converted):
    path, _ = converted
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["name"] == "tiny" and meta["decoder"] == "yolo" and meta["labels"] == '["thing", "other"]'
    assert meta["version"].startswith("coco-darknet-")


def test_weights_that_do_not_fit_the_cfg_are_refused(converted, tmp_path):
    path, _ = converted
    folder = path.parent
    (tmp_path / "short.weights").write_bytes((folder / "tiny.weights").read_bytes()[:-40])
    with pytest.raises(ValueError, match="shorter"):
        convert(folder / "tiny.cfg", tmp_path / "short.weights", folder / "tiny.names", tmp_path / "x.onnx")


def test_cfg_must_start_with_net():
    with pytest.raises(ValueError, match=r"\[net\]"):
        parse_cfg("[convolutional]\nfilters=1\n")
