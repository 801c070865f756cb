"""Inference runtimes behind one interface: onnxruntime, and OpenVINO (f32, bf16, or a quantized int8 model).

A backend holds `instances` independent model instances (onnxruntime: a session each; OpenVINO: one
compiled model with that many streams and an infer request per stream). Each instance runs one batch
at a time; different instances run at once, each on its share of the pod's CPUs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorInfo:
    """A model input as the service validates it: onnxruntime's type names (tensor(float), ...) and
    its shape, with None or a name for a dynamic axis."""

    name: str
    type: str
    shape: list[int | str | None]


class Backend(Protocol):
    name: str  # "onnxruntime" | "openvino"
    precision: str  # what the runtime actually computes in: "f32" | "bf16" | "int8" (a quantized model)
    instances: int
    threads_per_instance: int
    inputs: list[TensorInfo]
    output_names: list[str]
    metadata: dict[str, str]  # the model's custom metadata (name, version, labels, decoder...)
    preprocessing: str | None  # what the runtime's graph does to the pixels before the model, if anything

    def run(self, instance: int, tensor: np.ndarray) -> list[np.ndarray]:
        """Outputs in output_names order. Thread-safe across different instances only."""


class BackendError(RuntimeError):
    pass


def ort_session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # An instance runs one batch at a time, so its parallelism belongs inside the op.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle intra-op threads would otherwise spin between runs, taking the CPU that request
    # threads need to decode the next JPEGs (measured: service throughput, make bench).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OrtBackend:
    name = "onnxruntime"
    precision = "f32"
    preprocessing: str | None = None  # the service casts and scales the pixels itself

    def __init__(self, path: Path, instances: int, threads: int):
        self.instances = instances
        self.threads_per_instance = threads
        self._sessions = [
            ort.InferenceSession(str(path), ort_session_options(threads), providers=["CPUExecutionProvider"])
            for _ in range(instances)
        ]
        first = self._sessions[0]
        self.inputs = [TensorInfo(node.name, node.type, list(node.shape)) for node in first.get_inputs()]
        self.output_names = [node.name for node in first.get_outputs()]
        self.metadata = dict(first.get_modelmeta().custom_metadata_map)

    def run(self, instance: int, tensor: np.ndarray) -> list[np.ndarray]:
        values: list[np.ndarray] = self._sessions[instance].run(self.output_names, {self.inputs[0].name: tensor})
        return values


# OpenVINO element types as onnxruntime names them, so validation messages read the same on both.
_OV_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "f64": "tensor(double)", "u8": "tensor(uint8)"}


def _ov_type(element_type: Any) -> str:
    name = str(element_type.get_type_name())
    return _OV_TYPES.get(name, f"tensor({element_type.to_string()})")


def openvino_version() -> str | None:
    try:
        import openvino as ov  # type: ignore[import-untyped]
    except Exception:
        return None
    return str(ov.__version__).split("-")[0]


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, path: Path, instances: int, threads: int, precision: str, input_scale: float | None = None):
        import openvino as ov

        core = ov.Core()
        # Read the file into memory rather than mapping it: a model file replaced on disk while mapped
        # (a re-download into the cache) would end the process with SIGBUS.
        core.set_property({"ENABLE_MMAP": False})
        model = core.read_model(str(path))
        self.inputs = [
            TensorInfo(
                port.get_any_name(),
                _ov_type(port.get_element_type()),
                [dim.get_length() if dim.is_static else None for dim in port.get_partial_shape()]
                if port.get_partial_shape().rank.is_static
                else [],
            )
            for port in model.inputs
        ]
        self.output_names = [port.get_any_name() for port in model.outputs]
        self.metadata = _ov_metadata(model)
        # `inputs` stay the model's own (what the service validates and describes); the service feeds the
        # pixels as uint8 NHWC when `preprocessing` says the graph takes them so.
        self.preprocessing: str | None = None
        if input_scale is not None:
            model, self.preprocessing = _pixels_in(model, input_scale)
        config = {
            # An int8 model runs its quantized layers in int8 whatever the hint; the rest stays in f32, as the
            # int8 gate measured it.
            "INFERENCE_PRECISION_HINT": "f32" if precision == "int8" else precision,
            # Streams are the instances: each runs one request on its own threads.
            "NUM_STREAMS": str(instances),
            "INFERENCE_NUM_THREADS": str(instances * threads),
            "PERFORMANCE_HINT": "THROUGHPUT" if instances > 1 else "LATENCY",
        }
        self._compiled = core.compile_model(model, "CPU", config)
        computed = compiled_precision(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.precision = "int8" if precision == "int8" and _is_quantized(model) else computed
        self.instances = instances
        self.threads_per_instance = threads
        self._requests = [self._compiled.create_infer_request() for _ in range(instances)]

    def run(self, instance: int, tensor: np.ndarray) -> list[np.ndarray]:
        request = self._requests[instance]
        # share_inputs: OpenVINO reads the batch where it is instead of copying it into the request's
        # tensor first (a copy per batch, with the GIL held); the caller keeps it unchanged until done.
        request.infer({0: tensor}, share_inputs=True)
        # Copies: the request's output tensors are reused by its next run, while these are decoded later.
        return [np.array(request.get_output_tensor(i).data, copy=True) for i in range(len(self.output_names))]


def _pixels_in(model: Any, scale: float) -> tuple[Any, str | None]:
    """The model taking the decoded pixels as they are (uint8, NHWC), with the cast, the scale and the
    transpose to its own float layout done inside OpenVINO's graph: the service then copies bytes instead
    of converting every pixel to float in Python's process (the costliest per-frame step the service
    adds to the model, with a quarter of the memory traffic). Models it does not fit stay as they are."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor  # type: ignore[import-untyped]

    if len(model.inputs) != 1:
        return model, None
    port = model.inputs[0]
    shape = port.get_partial_shape()
    if port.get_element_type() != ov.Type.f32 or not shape.rank.is_static or shape.rank.get_length() != 4:
        return model, None
    channels = [index for index in (1, 3) if shape[index].is_static and shape[index].get_length() == 3]
    if not channels:
        return model, None
    layout = "NCHW" if channels[0] == 1 else "NHWC"
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout(layout))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(1 / scale)
    return ppp.build(), f"uint8 NHWC pixels, cast, scaled by {scale:.6g} and laid out {layout} inside OpenVINO"


def compiled_precision(hint: Any) -> str:
    """What a compiled OpenVINO model computes in: its INFERENCE_PRECISION_HINT is an ov.Type, whose str()
    is "<Type: 'bfloat16'>" (not "bf16"); where the CPU lacks bf16 the plugin reports f32."""
    text = str(getattr(hint, "get_type_name", lambda: hint)()).lower()
    return "bf16" if text in ("bf16", "bfloat16") or "bfloat16" in str(hint).lower() else "f32"


def _is_quantized(model: Any) -> bool:
    """Whether a model holds quantized layers: FakeQuantize, in NNCF's IR or an ONNX QDQ model as OpenVINO reads it."""
    return any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops())


def _ov_metadata(model: Any) -> dict[str, str]:
    """The ONNX file's metadata_props, which OpenVINO keeps under rt_info["framework"]."""
    try:
        info = model.get_rt_info()
        if "framework" not in info:
            return {}
        keys = list(info["framework"].keys())
        return {str(key): str(model.get_rt_info(["framework", key]).astype(str)) for key in keys}
    except Exception as exc:
        log.warning("model metadata not readable through OpenVINO: %s", exc)
        return {}


def default_instances(cpus: int, openvino: bool = False) -> int:
    """Model instances for a pod with `cpus` CPUs, one thread each where they share the weights.

    Measured 2026-11-26 (docs/PERFORMANCE.md), YOLOv4-tiny: OpenVINO streams of one thread each beat
    fewer, wider streams on every CPU tried (16-vCPU Xeon, bf16: 16 x 1 832 frames/s against 8 x 2 655;
    pinned to 2 vCPUs: 2 x 1 181 against 1 x 2 138), and streams share one compiled model, so one per
    CPU costs little memory. onnxruntime sessions each hold their own copy of the weights (two sessions:
    490 MB against 330 MB for one), so it gets one per two CPUs (16 vCPUs: 8 x 2 ran 2.5x one session of
    16 threads)."""
    return max(1, cpus if openvino else cpus // 2)


def threads_for(cpus: int, instances: int) -> int:
    return max(1, cpus // instances)
