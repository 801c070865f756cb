"""Load an ONNX model into a tuned onnxruntime session and describe it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from vidpipe.storage import fetch_to_local

from .decoders import Decoder, RawDecoder, YoloDecoder
from .preprocess import InputSpec
from .settings import DecoderMode, InferenceSettings

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
}


class ModelError(RuntimeError):
    pass


@dataclass
class LoadedModel:
    session: ort.InferenceSession
    input: InputSpec
    output_names: list[str]
    name: str
    version: str
    labels: list[str]
    decoder: Decoder
    source_uri: str
    load_seconds: float
    metadata: dict[str, str] = field(default_factory=dict)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {self.input.name: tensor})
        return dict(zip(self.output_names, values, strict=True))

    def describe(self) -> dict[str, Any]:
        spec = self.input
        shape = [spec.fixed_batch or "batch"] + (
            [3, spec.height, spec.width] if spec.layout == "NCHW" else [spec.height, spec.width, 3]
        )
        return {
            "name": self.name,
            "version": self.version,
            "decoder": self.decoder.kind,
            "input": {"name": spec.name, "shape": shape, "layout": spec.layout, "dtype": str(np.dtype(spec.dtype))},
            "outputs": self.output_names,
            "labels": self.labels,
            "source": self.source_uri,
        }


MAX_FIXED_BATCH = 256  # as INFERENCE_MAX_BATCH_SIZE: a larger fixed batch would be one huge input tensor


def _describe_input(node: ort.NodeArg) -> str:
    return f"{node.name!r} ({node.type}, shape {list(node.shape)})"


def _input_spec(session: ort.InferenceSession, settings: InferenceSettings) -> InputSpec:
    """How to feed the model's one image input; ModelError naming the input and its shape for a model this
    service cannot feed (refused at start-up: /healthz reports model_unavailable with the message)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        listed = ", ".join(_describe_input(node) for node in inputs) or "none"
        raise ModelError(
            f"model has {len(inputs)} inputs: {listed}; this service feeds models with exactly one image input"
        )
    node = inputs[0]
    if node.type not in _ORT_TYPES:
        raise ModelError(
            f"model input {_describe_input(node)} has element type {node.type}; supported: "
            f"{', '.join(sorted(_ORT_TYPES))}"
        )
    shape = list(node.shape)
    if len(shape) != 4:
        raise ModelError(
            f"model input {_describe_input(node)} has rank {len(shape)}; expected a 4-D image batch (NCHW or NHWC)"
        )
    if shape[1] == 3:
        layout, height, width = "NCHW", shape[2], shape[3]
    elif shape[3] == 3:
        layout, height, width = "NHWC", shape[1], shape[2]
    else:
        raise ModelError(f"model input {_describe_input(node)} has no 3-channel axis (NCHW or NHWC)")
    fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if fixed_batch is not None and fixed_batch > MAX_FIXED_BATCH:
        raise ModelError(
            f"model input {_describe_input(node)} has a fixed batch of {fixed_batch}; at most "
            f"{MAX_FIXED_BATCH} is served"
        )
    size = settings.input_size
    return InputSpec(
        name=node.name,
        layout=layout,
        height=height if isinstance(height, int) and height > 0 else size,
        width=width if isinstance(width, int) and width > 0 else size,
        dtype=np.dtype(_ORT_TYPES[node.type]),
        scale=settings.input_scale,
        fixed_batch=fixed_batch,
    )


def _labels(metadata: dict[str, str], settings: InferenceSettings) -> list[str]:
    if settings.labels_uri:
        path = fetch_to_local(settings.labels_uri, settings.model_cache_dir)
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if "labels" in metadata:
        try:
            labels = json.loads(metadata["labels"])
        except json.JSONDecodeError as exc:
            raise ModelError(f"model metadata 'labels' is not JSON: {exc}") from None
        return [str(x) for x in labels]
    return []


def _decoder(
    metadata: dict[str, str], output_names: list[str], labels: list[str], settings: InferenceSettings
) -> Decoder:
    mode = settings.decoder
    if mode is DecoderMode.AUTO:
        mode = DecoderMode.YOLO if metadata.get("decoder") == "yolo" else DecoderMode.RAW
    if mode is DecoderMode.YOLO:
        missing = {"boxes", "scores"} - set(output_names)
        if missing:
            raise ModelError(
                f"INFERENCE_DECODER=yolo needs outputs 'boxes' and 'scores'; model lacks {sorted(missing)}"
            )
        return YoloDecoder(labels, settings.score_threshold, settings.iou_threshold, settings.max_detections)
    return RawDecoder()


def session_options(settings: InferenceSettings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One batch runs at a time (the batcher serializes), so parallelism belongs inside the op.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = settings.intra_op_threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    # Idle intra-op threads would otherwise spin between runs, taking the CPU that request
    # threads need to decode the next JPEGs (measured: service throughput, make bench).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(settings: InferenceSettings) -> LoadedModel:
    started = time.perf_counter()
    path: Path = fetch_to_local(settings.model_uri, settings.model_cache_dir)
    try:
        session = ort.InferenceSession(str(path), session_options(settings), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"{settings.model_uri}: not a loadable ONNX model ({exc})") from None
    meta = session.get_modelmeta()
    metadata = dict(meta.custom_metadata_map)
    output_names = [o.name for o in session.get_outputs()]
    labels = _labels(metadata, settings)
    model = LoadedModel(
        session=session,
        input=_input_spec(session, settings),
        output_names=output_names,
        name=metadata.get("name") or meta.graph_name or path.stem,
        # A model without version metadata is identified by its bytes (onnxruntime's own default is a
        # meaningless 9223372036854775807).
        version=metadata.get("version") or f"sha256-{file_sha256(path)[:12]}",
        labels=labels,
        decoder=_decoder(metadata, output_names, labels, settings),
        source_uri=settings.model_uri,
        load_seconds=0.0,
        metadata=metadata,
    )
    model.load_seconds = time.perf_counter() - started
    log.info("loaded model %s %s from %s in %.2fs", model.name, model.version, settings.model_uri, model.load_seconds)
    return model
