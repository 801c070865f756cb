"""(b) The inference service over HTTP across client concurrency, running (a)'s best configuration, and
its ratio to that configuration from pairs measured back to back; the service's own runtime choice."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.bare import BareBackends
from bench.common import log
from tools.harness.processes import free_port, inference_process
from tools.harness.results import percentile
from tools.paths import DEFAULT_MODEL


def http_load(
    url: str, bodies: list[bytes], content_type: str, frames_per_request: int, concurrency: int, seconds: float
) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * concurrency

    def client(index: int) -> None:
        with httpx.Client(timeout=60) as session:
            i = index
            while time.perf_counter() < stop:
                response = session.post(url, content=bodies[i % len(bodies)], headers={"Content-Type": content_type})
                response.raise_for_status()
                counts[index] += frames_per_request
                i += concurrency

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    return round(sum(counts) / (time.perf_counter() - started), 2)


def concurrency_levels(cpus: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Client concurrency for /v1/infer and for /v1/infer/batch (16 frames a request). On 2 vCPUs as
    `make bench` has always measured; on more, enough frames in flight to keep every instance's batch
    full, never more than the service's queue (sized from its instances: settings.queue_for)."""
    if cpus <= 2:
        return (1, 2, 4, 8, 16), (1, 2, 3)
    return tuple(sorted({min(128, cpus * k) for k in (1, 2, 4)})), (2, 4, 8)


def service_sweep(base_url: str, frames: list[bytes], seconds: float, cpus: int = 2) -> dict:
    from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch

    single_levels, batch_levels = concurrency_levels(cpus)
    http_load(f"{base_url}/v1/infer", frames, "image/jpeg", 1, 2, 2)  # warm-up
    single = {}
    for concurrency in single_levels:
        single[concurrency] = http_load(f"{base_url}/v1/infer", frames, "image/jpeg", 1, concurrency, seconds)
        log(f"service /v1/infer, {concurrency} clients: {single[concurrency]} frames/s")
    batches = [encode_batch(frames[i : i + 16]) for i in range(0, len(frames) - 15, 16)]
    batched = {}
    for concurrency in batch_levels:
        batched[concurrency] = http_load(
            f"{base_url}/v1/infer/batch", batches, BATCH_CONTENT_TYPE, 16, concurrency, seconds
        )
        log(f"service /v1/infer/batch x16, {concurrency} clients: {batched[concurrency]} frames/s")
    best_single, best_batched = max(single, key=single.get), max(batched, key=batched.get)
    if single[best_single] > batched[best_batched]:
        best = {
            "endpoint": "/v1/infer",
            "content_type": "image/jpeg",
            "frames_per_request": 1,
            "concurrency": best_single,
        }
    else:
        best = {
            "endpoint": "/v1/infer/batch",
            "content_type": BATCH_CONTENT_TYPE,
            "frames_per_request": 16,
            "concurrency": best_batched,
        }
    return {
        "single_fps_by_concurrency": single,
        "batch16_fps_by_concurrency": batched,
        "best": best,
        "fps": max(max(single.values()), max(batched.values())),
    }


def service_paired(
    base_url: str, frames: list[bytes], best: dict, bare: BareBackends, rounds: int, seconds: float
) -> dict:
    """service_vs_best_bare from pairs measured back to back (the best bare configuration, then the
    service, running that configuration, at its best client settings), median over rounds: robust to
    this VM's drifting speed."""
    from vidpipe.contract import encode_batch

    bodies = (
        frames
        if best["frames_per_request"] == 1
        else [encode_batch(frames[i : i + 16]) for i in range(0, len(frames) - 15, 16)]
    )
    pairs = []
    for _ in range(rounds):
        reference = bare.reference(seconds, "service pair")
        fps = http_load(
            f"{base_url}{best['endpoint']}",
            bodies,
            best["content_type"],
            best["frames_per_request"],
            best["concurrency"],
            seconds,
        )
        pairs.append({"bare_fps": reference, "service_fps": fps, "ratio": round(fps / reference, 3)})
        log(f"pair: bare {reference} frames/s, service {fps} frames/s -> {fps / reference:.3f}")
    return {"pairs": pairs, "ratio": round(percentile([p["ratio"] for p in pairs], 50), 3)}


def auto_runtime(workdir: Path) -> dict:
    """The runtime the service picks by itself here (INFERENCE_BACKEND/PRECISION/INSTANCES/THREADS
    unset): backend, precision and why, instances x threads sized from the CPUs it may use."""
    port = free_port()
    process = inference_process(port, workdir / "logs", DEFAULT_MODEL)
    process.name, process.log_path = "inference-auto", workdir / "logs" / "inference-auto.log"
    for name in ("INFERENCE_BACKEND", "INFERENCE_PRECISION", "INFERENCE_INSTANCES", "INFERENCE_INTRA_OP_THREADS"):
        process.env.pop(name, None)
    process.start()
    (workdir / "inference.pid").write_text(f"{process.process.pid}\n")
    try:
        process.wait_ready()  # on the ops port (INFERENCE_OPS_PORT), not the API's
        runtime = httpx.get(f"http://127.0.0.1:{port}/v1/model", timeout=30).json().get("runtime", {})
    finally:
        process.stop()
        (workdir / "inference.pid").unlink(missing_ok=True)
    log(f"the service's own choice (auto): {runtime}")
    return runtime
