"""(g) The service ceiling, measured right after (b): (b) again with a model that costs nothing
(bench.null_model) on the same settings, what the service's own work (HTTP, decode, resize, batching, NMS,
JSON) allows on this machine."""

from __future__ import annotations

from pathlib import Path

from bench.service import service_sweep
from tools.harness.processes import free_port, inference_process
from tools.paths import DEFAULT_MODEL


def service_ceiling(
    workdir: Path,
    frames: list[bytes],
    seconds: float,
    cpus: int,
    runtime: dict[str, str],
    prebuilt: Path | None = None,
) -> dict:
    """(g) The service's sweep on bench.null_model with the backend, instances and threads of (b) (in f32:
    a null model has nothing to compute in bf16, and no accuracy gate). Against the bare limit it says
    whether the service itself can keep up with the model on this machine: well above 1, the gap in (b)
    is CPU the model shares with the service's work; near or under 1, the service is the bound."""
    if prebuilt is None:
        from bench.null_model import null_model  # needs onnx; a machine without it gets `prebuilt`

        model = null_model(DEFAULT_MODEL, workdir / "null-model" / "null.onnx")
    else:
        model = prebuilt
    env = {**runtime, "INFERENCE_PRECISION": "f32"}
    port = free_port()
    process = inference_process(port, workdir / "logs-ceiling", model, **env).start()
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_ready()
        sweep = service_sweep(url, frames, seconds, cpus)
    finally:
        process.stop()
    return {**sweep, "runtime": env, "model": f"bench.null_model imitating {DEFAULT_MODEL.name}"}
