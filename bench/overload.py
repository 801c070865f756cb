"""(f) Memory and latency under overload: peak RSS of each process while the publisher offers 3x the
pipeline's capacity."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil

from bench.common import log
from bench.end_to_end import Pipeline
from tools.harness.processes import ServiceProcess
from tools.harness.results import percentile


def rss_mb(pid: int) -> float:
    """A service's resident memory with its children's (the inference service's serving processes)."""
    try:
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in members:
        try:
            total += float(member.memory_info().rss) / 2**20
        except psutil.Error:
            continue
    return total


def overload(
    bootstrap: str,
    inference: ServiceProcess,
    inference_url: str,
    workdir: Path,
    capacity_fps: float,
    seconds: float,
    max_age_ms: int,
) -> dict:
    pipe = Pipeline(bootstrap, inference_url, workdir, "overload", CONSUMER_MAX_FRAME_AGE_MS=str(max_age_ms))
    offered = 3 * capacity_fps
    publisher = pipe.publish("--pace", "source", "--speed", f"{offered / 25:.3f}")
    processes = {"publisher": publisher, "consumer": pipe.consumer, "inference": inference}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in processes}
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        for name, process in processes.items():
            samples[name].append((round(elapsed, 1), round(rss_mb(process.process.pid), 1)))
        pipe.collector.poll(0.5)
    publisher.signal(signal.SIGTERM)
    publisher.process.wait(60)
    stats = json.loads((pipe.workdir / "pub.json").read_text())
    latencies = [(pipe.collector.received_us[k] - d["capture_ts_us"]) / 1000 for k, d in pipe.collector.results.items()]
    pipe.close()
    memory = {}
    for name, series in samples.items():
        warm_up = [mb for t, mb in series if t < 10]
        after_10 = [mb for t, mb in series if t >= 10]
        memory[name] = {
            "peak_mb": max(mb for _, mb in series),
            "at_10s_mb": after_10[0] if after_10 else 0.0,
            # Growth is a later peak above the warm-up's peak. (Measured from the single sample at 10 s, a
            # moment when the allocator had just returned memory read as growth: 16.9 MB, for a process
            # whose peak rose 2.9 MB over the minute.)
            "growth_after_10s_mb": round(max(0.0, max(after_10) - max(warm_up)), 1) if after_10 and warm_up else 0.0,
        }
    result = {
        "offered_fps": round(offered, 1),
        "seconds": seconds,
        "max_frame_age_ms": max_age_ms,
        "frames_published": stats["frames_published"],
        "frames_with_results": len(pipe.collector.results),
        "latency_ms": {f"p{q}": round(percentile(latencies, q), 1) for q in (50, 95, 99, 100)},
        "memory": memory,
        "rss_series": samples,
    }
    log(f"overload: { ({k: v for k, v in result.items() if k != 'rss_series'}) }")
    return result
