"""Load an ONNX model into a runtime (OpenVINO or onnxruntime, see backends.py) and describe it."""

from __future__ import annotations

import json
import logging
import mmap
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from vidpipe.storage import fetch_to_local, sha256_file

from .accuracy_gate import INT8_FILES, INT8_XML, GateVerdict, changed_int8_files, read_verdict
from .backends import (
    Backend,
    OpenVinoBackend,
    OrtBackend,
    TensorInfo,
    default_instances,
    openvino_version,
    threads_for,
)
from .cpu import bf16_flags, is_x86_64
from .decoders import Decoder, RawDecoder, YoloDecoder
from .preprocess import InputSpec
from .serving import serving_share
from .settings import BackendChoice, DecoderMode, InferenceSettings, PrecisionChoice

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
    backend: Backend
    input: InputSpec
    output_names: list[str]
    name: str
    version: str
    labels: list[str]
    decoder: Decoder
    source_uri: str
    load_seconds: float
    metadata: dict[str, str] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)  # backend, precision, instances, why
    model_input: InputSpec | None = None  # the model's own input, where the service feeds another (`input`)

    @property
    def instances(self) -> int:
        return self.backend.instances

    def run(self, tensor: np.ndarray, instance: int = 0) -> dict[str, np.ndarray]:
        """One batch on one model instance (instances run concurrently; one instance runs one batch)."""
        values = self.backend.run(instance, tensor)
        return dict(zip(self.output_names, values, strict=True))

    def describe(self) -> dict[str, Any]:
        spec = self.model_input or self.input
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
            "runtime": self.runtime,
        }


# Graph names exporters write whatever the model: not a name (PyTorch: main_graph, torch_jit; tf2onnx: tf2onnx).
_GENERIC_GRAPH_NAMES = {"", "main_graph", "torch_jit", "torch-jit-export", "tf2onnx"}


def model_name(metadata: dict[str, str], path: Path) -> str:
    """The model's name, the same whichever runtime serves it: its `name` metadata, else its ONNX graph's name
    (unless an exporter's generic one), else the file's stem. Read from the file, not the runtime: OpenVINO
    names every ONNX model it reads onnx_Frontend_IR."""
    if metadata.get("name"):
        return metadata["name"]
    graph = onnx_graph_name(path)
    return graph if graph is not None and graph.strip() not in _GENERIC_GRAPH_NAMES else path.stem


def onnx_graph_name(path: Path) -> str | None:
    """The graph name (ModelProto.graph.name) of an ONNX file, read from the protobuf without the onnx package
    (not a dependency of the service): the fields before it are skipped by their lengths, so a model of any
    size costs a step per top-level field and graph node, not per byte. None when the file does not say."""
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            graph = _field(data, 0, len(data), 7)  # ModelProto.graph
            if graph is None:
                return None
            name = _field(data, graph[0], graph[1], 2)  # GraphProto.name
            return None if name is None else bytes(data[name[0] : name[1]]).decode("utf-8")
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _varint(data: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _field(data: mmap.mmap, pos: int, end: int, number: int) -> tuple[int, int] | None:
    """(start, end) of the first length-delimited field `number` of the message in data[pos:end]."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(data, pos, end)
            continue
        if wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise ValueError("field runs past its message")
            if key >> 3 == number:
                return pos, pos + length
            pos += length
        else:  # groups (deprecated), or not protobuf at all
            raise ValueError(f"unexpected wire type {wire}")
    return None


MAX_FIXED_BATCH = 256  # as INFERENCE_MAX_BATCH_SIZE: a larger fixed batch would be one huge input tensor


def _describe_input(node: TensorInfo) -> str:
    return f"{node.name!r} ({node.type}, shape {list(node.shape)})"


def _input_spec(backend: Backend, settings: InferenceSettings) -> InputSpec:
    """How to feed the model's one image input; ModelError naming the input and its shape for a model this
    service cannot feed (refused at start-up: /healthz reports model_unavailable with the message)."""
    inputs = backend.inputs
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
        reduced_jpeg_decode=settings.jpeg_reduced_decode,
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


def _precision(settings: InferenceSettings, openvino: bool, verdict: GateVerdict) -> tuple[str, str]:
    """(precision to ask the runtime for, why), for f32, bf16 and auto (int8 is a model of its own)."""
    if settings.precision is PrecisionChoice.F32:
        return "f32", "INFERENCE_PRECISION=f32"
    if settings.precision is PrecisionChoice.BF16:
        if not openvino:
            raise ModelError("INFERENCE_PRECISION=bf16 needs the OpenVINO backend (onnxruntime serves f32 only)")
        return "bf16", "INFERENCE_PRECISION=bf16"
    if not openvino:
        return "f32", "auto: onnxruntime serves f32"
    flags = bf16_flags()
    if not flags:
        return "f32", "auto: this CPU has no AMX-BF16 or AVX512-BF16"
    if not verdict.allowed:
        return "f32", f"auto: {verdict.reason}"
    return "bf16", f"auto: CPU has {', '.join(flags)}; {verdict.reason}"


def int8_model_path(settings: InferenceSettings, sha256: str, require_gate: bool = True) -> tuple[Path, GateVerdict]:
    """The model's int8 version (OpenVINO IR beside it), fetched and checked against its gate file: refused with
    the reason unless the gate passed for this model's bytes and the IR files are the ones it measured."""
    verdict = read_verdict(settings.model_uri, sha256, settings.model_cache_dir, "int8")
    if require_gate and not verdict.allowed:
        hint = "" if verdict.report else " (python -m tools.quantize writes it)"
        raise ModelError(f"INFERENCE_PRECISION=int8: {verdict.reason}{hint}")
    paths = {}
    for key, suffix in INT8_FILES.items():
        try:
            paths[key] = fetch_to_local(settings.model_uri + suffix, settings.model_cache_dir)
        except Exception as exc:
            raise ModelError(
                f"INFERENCE_PRECISION=int8: {settings.model_uri}{suffix} could not be fetched "
                f"({' '.join(str(exc).split())[:200]}); python -m tools.quantize writes it"
            ) from None
    if require_gate and verdict.report is not None and (changed := changed_int8_files(verdict.report, paths)):
        raise ModelError(
            f"INFERENCE_PRECISION=int8: {settings.model_uri}{changed[0]} is not the file its gate measured "
            "(sha256 differs): run python -m tools.quantize again"
        )
    return paths["int8_xml"], verdict


# (local model path, its sha256) -> a verdict reached without a file beside the model (startup_gate.py).
VerdictSource = Callable[[Path, str], GateVerdict]


def _open_backend(
    settings: InferenceSettings,
    path: Path,
    sha256: str,
    require_gate: bool = True,
    startup_gate: VerdictSource | None = None,
) -> tuple[Backend, InputSpec, GateVerdict, dict[str, Any]]:
    cpus = serving_share()  # this process's share of the pod's CPUs (serving.py)

    def sizing(openvino: bool) -> tuple[int, int]:
        instances = settings.instances or default_instances(cpus, openvino)
        return instances, settings.intra_op_threads or threads_for(cpus, instances)

    choice = settings.backend
    version = openvino_version() if choice is not BackendChoice.ONNXRUNTIME else None
    if choice is BackendChoice.OPENVINO and version is None:
        raise ModelError("INFERENCE_BACKEND=openvino but the openvino package cannot be imported")
    openvino = choice is BackendChoice.OPENVINO or (
        choice is BackendChoice.AUTO and is_x86_64() and version is not None
    )
    backend: Backend | None = None
    if settings.precision is PrecisionChoice.INT8:
        if not openvino:
            raise ModelError("INFERENCE_PRECISION=int8 needs the OpenVINO backend (on x86-64, openvino installed)")
        int8_path, verdict = int8_model_path(settings, sha256, require_gate)
        try:
            backend = OpenVinoBackend(int8_path, *sizing(True), "int8", settings.input_scale)
        except Exception as exc:
            raise ModelError(f"{settings.model_uri}{INT8_XML}: OpenVINO cannot load this model ({exc})") from None
        spec = _input_spec(backend, settings)
        precision, why = backend.precision, f"INFERENCE_PRECISION=int8; {verdict.reason}"
    else:
        verdict = read_verdict(settings.model_uri, sha256, settings.model_cache_dir)
        if (
            startup_gate is not None
            and verdict.report is None  # no verdict for these bytes beside the model: the pod measures its own
            and settings.precision is PrecisionChoice.AUTO
            and openvino
            and bf16_flags()
        ):
            verdict = startup_gate(path, sha256)
        precision, why = _precision(settings, openvino, verdict)
    if openvino and backend is None:
        try:
            backend = OpenVinoBackend(path, *sizing(True), precision, settings.input_scale)
            spec = _input_spec(backend, settings)
        except Exception as exc:
            if choice is BackendChoice.OPENVINO or settings.precision is PrecisionChoice.BF16:
                if isinstance(exc, ModelError):
                    raise
                raise ModelError(f"{settings.model_uri}: OpenVINO cannot load this model ({exc})") from None
            log.warning("OpenVINO cannot serve %s (%s); using onnxruntime", settings.model_uri, exc)
            backend, precision, why = None, "f32", "auto: OpenVINO could not serve this model"
        else:
            if backend.precision != precision:
                why += f"; the runtime computes in {backend.precision} on this CPU"
                log.warning("asked OpenVINO for %s; it computes in %s on this CPU", precision, backend.precision)
    if backend is None:
        try:
            backend = OrtBackend(path, *sizing(False))
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{settings.model_uri}: not a loadable ONNX model ({exc})") from None
        spec = _input_spec(backend, settings)
    runtime: dict[str, Any] = {
        "backend": backend.name,
        "backend_version": version if backend.name == "openvino" else ort.__version__,
        "precision": backend.precision,
        "precision_reason": why,
        "instances": backend.instances,
        "threads_per_instance": backend.threads_per_instance,
        "input_preprocessing": backend.preprocessing or "in the service: pixels cast and scaled into the model's input",
        "cpu_limit": cpus,
        "accuracy_gate": verdict.describe(),
    }
    return backend, spec, verdict, runtime


def check_pinned_digest(settings: InferenceSettings, sha256: str) -> None:
    """INFERENCE_MODEL_SHA256, when set: the fetched file must be exactly the pinned one (checked before any
    runtime parses it), else ModelError naming the variable and both digests. The int8 files are pinned
    through it too: their gate file records their digests for this model's sha256."""
    pinned = settings.model_sha256
    if pinned and sha256 != pinned.lower():
        raise ModelError(
            f"INFERENCE_MODEL_SHA256: {settings.model_uri} has sha256 {sha256}, not the pinned {pinned.lower()}; "
            "refusing to load it (replace the file, or pin the new digest)"
        )


def load_model(
    settings: InferenceSettings, require_gate: bool = True, startup_gate: VerdictSource | None = None
) -> LoadedModel:
    """The model as settings say. `require_gate=False` is for the accuracy gate itself, which measures an int8
    model before any verdict exists. `startup_gate`: how the service reaches a bf16 verdict when none lies
    beside the model (the service passes startup_gate.gate_for(settings); tools pass none)."""
    started = time.perf_counter()
    path: Path = fetch_to_local(settings.model_uri, settings.model_cache_dir)
    sha256 = sha256_file(path)
    check_pinned_digest(settings, sha256)
    backend, declared, _verdict, runtime = _open_backend(settings, path, sha256, require_gate, startup_gate)
    # OpenVINO's graph casts, scales and lays out the pixels itself: the service feeds them as decoded.
    spec = replace(declared, layout="NHWC", dtype=np.dtype(np.uint8)) if backend.preprocessing else declared
    metadata = backend.metadata
    output_names = backend.output_names
    labels = _labels(metadata, settings)
    model = LoadedModel(
        backend=backend,
        input=spec,
        output_names=output_names,
        name=model_name(metadata, path),
        # A model without version metadata is identified by its bytes (onnxruntime's own default is a
        # meaningless 9223372036854775807).
        version=metadata.get("version") or f"sha256-{sha256[:12]}",
        labels=labels,
        decoder=_decoder(metadata, output_names, labels, settings),
        source_uri=settings.model_uri,
        load_seconds=0.0,
        metadata=metadata,
        runtime=runtime,
        model_input=declared if spec is not declared else None,
    )
    model.load_seconds = time.perf_counter() - started
    log.info(
        "loaded model %s %s from %s in %.2fs: %s %s, %d instance(s) x %d thread(s) (%s)",
        model.name,
        model.version,
        settings.model_uri,
        model.load_seconds,
        runtime["backend"],
        runtime["precision"],
        runtime["instances"],
        runtime["threads_per_instance"],
        runtime["precision_reason"],
    )
    return model
