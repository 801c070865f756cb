"""(g) The service ceiling, measured right after (b): (b) again with a model that costs nothing
(bench.null_model) on the same settings, what the service's own work (HTTP, decode, resize, batching, NMS,
JSON) allows on this machine: with one serving process, and with all the processes the service starts by
itself (INFERENCE_PROCESSES=0: inference_service.serving.auto_processes)."""

from __future__ import annotations

from pathlib import Path

from bench.common import log
from bench.figures import one_process_env, split_env
from bench.service import service_sweep
from tools.harness.processes import free_port, inference_process
from tools.paths import DEFAULT_MODEL


def _sweep(workdir: Path, model: Path, frames: list[bytes], seconds: float, cpus: int, env: dict[str, str]) -> dict:
    port = free_port()
    name = f"logs-ceiling-{env['INFERENCE_PROCESSES']}"
    process = inference_process(port, workdir / name, model, **env).start()
    try:
        process.wait_ready()
        return {**service_sweep(f"http://127.0.0.1:{port}", frames, seconds, cpus), "runtime": env}
    finally:
        process.stop()


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
    is CPU the model shares with the service's work; near or under 1, the service is the bound.

    Measured twice: in one process (`one_process`), then over the processes the service chooses by itself
    here, (b)'s instances split among them (bench.figures.split_env); the top-level figures are the latter,
    and `all_vs_one_process` is their ratio. `runtime`: (b)'s settings, in one process or already split."""
    if prebuilt is None:
        from bench.null_model import null_model  # needs onnx; a machine without it gets `prebuilt`

        model = null_model(DEFAULT_MODEL, workdir / "null-model" / "null.onnx")
    else:
        model = prebuilt
    single = {**one_process_env(runtime), "INFERENCE_PRECISION": "f32"}
    log("(g) with one serving process")
    one = _sweep(workdir, model, frames, seconds, cpus, single)
    every = {**split_env(single, cpus), "INFERENCE_PRECISION": "f32"}
    processes = int(every["INFERENCE_PROCESSES"])
    if processes > 1:
        log(f"(g) with {processes} serving processes")
        top = _sweep(workdir, model, frames, seconds, cpus, every)
    else:
        top = one
    return {
        **top,
        "processes": processes,
        "one_process": {k: one[k] for k in ("fps", "best", "runtime")},
        "all_vs_one_process": round(top["fps"] / one["fps"], 3),
        "model": f"bench.null_model imitating {DEFAULT_MODEL.name}",
    }
